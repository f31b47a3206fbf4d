"""Typed dependencies for routes: settings, a database session, the current user, the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from tuneforge.db.tables import User
from tuneforge.inference.client import InferenceClient
from tuneforge.services.auth import SESSION_COOKIE, resolve_user
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The largest `offset` a list accepts: far past any real list, well inside every database's
#: integers (a larger one overflowed SQLite's).
MAX_OFFSET = 10**9
#: The largest event id a stream resumes after: the range of the events' 64-bit key.
MAX_EVENT_ID = 2**63 - 1


# The dependencies that only read the app's state are `async def`: FastAPI runs a plain `def`
# dependency on a worker thread, and every hop to a thread and back costs a request time on a
# busy interpreter.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error.
    Reads (GET, HEAD, OPTIONS) write nothing, so on SQLite they take no write lock: they never
    wait for a writer (a job reporting, an upload), and no writer waits for them.

    Opening the session does no I/O (it connects and begins at its first query, on the thread
    of the dependency or route that makes it), so only its end takes a worker thread."""
    read_only = request.method in SAFE_METHODS
    factory = request.app.state.read_sessions if read_only else request.app.state.sessions
    session: Session = factory()
    succeeded = False
    try:
        yield session
        succeeded = True
    finally:
        with anyio.CancelScope(shield=True):  # a client that went away still ends it
            await run_in_threadpool(_end, session, succeeded)


def _end(session: Session, commit: bool) -> None:
    """Commit (when the route succeeded) and close: what was not committed is rolled back."""
    with session:
        if commit:
            session.commit()


async def end_transaction(session: Session) -> None:
    """Commit the request's transaction before a long wait, such as a generation: on SQLite an
    open transaction holds the write lock, and every other writer (a job's heartbeat, an upload,
    a health check) would wait for the whole answer."""
    await run_in_threadpool(session.commit)


async def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.store
    return store


async def get_inference(request: Request) -> InferenceClient:
    client: InferenceClient = request.app.state.inference
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
InferenceDep = Annotated[InferenceClient, Depends(get_inference)]


def get_current_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    return resolve_user(
        session,
        settings,
        request.app.state.signer,
        address=request.client.host if request.client else None,
        headers={k.lower(): v for k, v in request.headers.items()},
        cookie=request.cookies.get(SESSION_COOKIE),
        allow_cookie=request.method in SAFE_METHODS,
    )


CurrentUser = Annotated[User, Depends(get_current_user)]
