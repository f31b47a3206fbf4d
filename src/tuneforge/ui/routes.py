"""Plain HTTP routes of the UI: the login and logout forms (only a response can set a cookie)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from tuneforge.db.session import transaction
from tuneforge.errors import RateLimited, Unauthenticated
from tuneforge.services.auth import SESSION_COOKIE, login

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else the home page (no open redirects)."""
    if (
        target
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and target.isprintable()
    ):
        return target
    return "/"


def _cross_site(request: Request) -> bool:
    """A form posted from another site's page.

    Browsers say so in `Sec-Fetch-Site`; older ones only send an `Origin` to compare with `Host`.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != request.headers.get("host")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


@router.post("/auth/login", response_model=None)
def login_form(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """Check the login form; on success set the session cookie and go where the user was going."""
    if _cross_site(request):
        return PlainTextResponse("Cross-site login forms are refused.", status_code=403)
    app_state = request.app.state
    if app_state.settings.auth_mode != "local":
        return _see_other(safe_next(next))
    address = request.client.host if request.client else "unknown"
    try:
        with transaction(app_state.sessions) as session:
            user = login(session, app_state.limiter, address, username, password)
            cookie = app_state.signer.sign(user)
    except (Unauthenticated, RateLimited) as exc:
        query = urlencode({"error": exc.code, "username": username, "next": next})
        return _see_other(f"/login?{query}")
    response = _see_other(safe_next(next))
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=app_state.settings.session_max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/auth/logout", response_model=None)
def logout_form(request: Request) -> Response:
    if _cross_site(request):
        return PlainTextResponse("Cross-site logout forms are refused.", status_code=403)
    response = _see_other("/login")
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
    return response
