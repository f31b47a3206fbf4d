"""What the API answers for a request no operation takes, in its error shape: 405 with `Allow`
for a method a path does not have, 404 for a path that does not exist."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Match

from tuneforge.errors import NotFound

#: Every method a client may send (CONNECT is for proxies).
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def install(app: FastAPI, prefix: str) -> None:
    """Answer every request under `prefix` that no route of `app` takes (add it last)."""

    @app.api_route(f"{prefix}/{{rest:path}}", methods=list(ALL_METHODS), include_in_schema=False)
    def unknown_endpoint(rest: str, request: Request) -> None:
        """Unknown API paths answer in the API's error shape, not with a UI page."""
        allowed = sorted(
            method
            for route in iter_route_contexts(app.routes)
            if route.endpoint is not unknown_endpoint
            and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        )
        if allowed:
            raise HTTPException(
                405,
                f"{request.url.path} does not take {request.method}; it takes "
                f"{', '.join(allowed)}.",
                headers={"Allow": ", ".join(allowed)},
            )
        raise NotFound(f"There is no endpoint {prefix}/{rest}; see /docs.")
