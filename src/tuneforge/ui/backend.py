"""The UI's way into the application: the one FastAPI app it is mounted on, its services and users.

NiceGUI registers pages once per process, so the app is held here rather than read from
`request.app` (inside a page that is NiceGUI's own sub-application, not ours).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from nicegui import run, ui
from sqlalchemy.orm import Session

from tuneforge.db.session import transaction
from tuneforge.db.tables import User
from tuneforge.errors import DomainError, Unauthenticated
from tuneforge.services.auth import SESSION_COOKIE, resolve_user

P = ParamSpec("P")
R = TypeVar("R")

_app: FastAPI | None = None


def bind(app: FastAPI) -> None:
    """Make `app` the one the UI serves; a process can serve the UI for one app only."""
    global _app
    if _app is not None:
        raise RuntimeError(
            "The web UI is already mounted on another app in this process; "
            "build further apps with create_app(..., ui=False)."
        )
    _app = app


def state() -> Any:
    """The app's state: `settings`, `sessions`, `signer`, `limiter`, `store`."""
    if _app is None:
        raise RuntimeError("The web UI is not mounted.")
    return _app.state


async def call(fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a service function in its own transaction, off the event loop."""
    return await _run(False, fn, *args, **kwargs)


async def read(fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Like `call`, for functions that only read (the live views poll with it)."""
    return await _run(True, fn, *args, **kwargs)


async def _run(
    read_only: bool, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
) -> R:
    def work() -> tuple[R]:
        with transaction(state().sessions, read_only=read_only) as session:
            return (fn(session, *args, **kwargs),)

    outcome = await run.io_bound(work)
    if outcome is None:  # NiceGUI is shutting down or the call was cancelled
        raise asyncio.CancelledError
    return outcome[0]


@contextmanager
def reported() -> Iterator[None]:
    """Show a domain error (a conflict, a bad input) to the user instead of raising it."""
    try:
        yield
    except DomainError as exc:
        ui.notify(exc.message, type="negative")


def _request_user(session: Session, request: Request) -> User | None:
    try:
        return resolve_user(
            session,
            state().settings,
            state().signer,
            address=request.client.host if request.client else None,
            headers={k.lower(): v for k, v in request.headers.items()},
            cookie=request.cookies.get(SESSION_COOKIE),
            allow_cookie=True,
        )
    except Unauthenticated:
        return None


async def current_user(request: Request) -> User | None:
    """The user behind a page request, or None when nobody is signed in."""
    return await call(_request_user, request)


def login_url(request: Request) -> str:
    """The login page, returning to where `request` was going."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?{urlencode({'next': target})}"
