"""The OpenAPI document's failures: every operation lists the error statuses it can answer with,
each in the one error shape of `api/errors.py`, and names the bearer token it needs.

The statuses come from what a route is made of, in one place rather than on every decorator:
401 where a user is required, 404 where the path names something, 400, 413 and 422 where a body
or parameters are parsed, 503 where the artifact store or the inference server is used (507 too
where the store may be full, 409 where an inference engine may not run here). A route declares
the statuses its services add (`responses=errors(409, 429)`); their content is the error shape
too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext, iter_route_contexts

from tuneforge.api.deps import get_current_user, get_inference, get_store

ERROR_REF = "#/components/schemas/Error"
SECURITY = "bearer"
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "description": "Every failure of the API: what went wrong, for a program and for a person.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "description": "The failure.",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "What kind of failure, for programs: `not_found`, "
                    "`invalid_input`, `conflict`, `unauthenticated`, `too_large`...",
                },
                "message": {"type": "string", "description": "What went wrong, for people."},
                "details": {
                    "type": "object",
                    "description": "More about it: for `invalid_input`, the `problems` "
                    "(each a `field` and its `problem`).",
                },
            },
        }
    },
}
#: What each status means, as the document says it when a route gives no description.
MEANINGS = {
    400: "The body could not be read: it is not the JSON or form data the operation takes.",
    401: "No valid API token (or session) came with the request.",
    403: "The user may not do this.",
    404: "Nothing of this id is yours (or it does not exist).",
    409: "The state of what it acts on does not allow it now.",
    413: "The request body is larger than the server's limit.",
    422: "The request is not valid: the `problems` in `details` say where and why.",
    429: "Too many attempts: wait and try again.",
    503: "A part of the server (the artifact store, the inference server) cannot be used now.",
    507: "The disk where TuneForge keeps its data is full.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses` for the statuses its services can add (the content is filled in
    with the error shape when the document is built)."""
    return {status: {"description": MEANINGS[status]} for status in statuses}


def install(app: FastAPI) -> None:
    """Build the app's OpenAPI document with its failures (once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_failures(build(), list(iter_route_contexts(app.routes)))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def document_failures(document: dict[str, Any], routes: list[RouteContext]) -> None:
    """Add the error statuses, the `Error` schema and the bearer security scheme to `document`."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        SECURITY: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (`tuneforge token create`, or `POST /api/v1/auth/login`).",
        }
    }
    for route in routes:
        dependant = getattr(route, "dependant", None)
        if not isinstance(dependant, Dependant) or not route.include_in_schema:
            continue
        calls = set(_calls(dependant))
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            if get_current_user in calls:
                operation["security"] = [{SECURITY: []}]
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(route, operation, calls)):
                responses.setdefault(str(status), {"description": MEANINGS[status]})
            for status, response in responses.items():
                # FastAPI's own 422 names its validation schema: ours answer in the error shape.
                if status.startswith(("4", "5")) and ("content" not in response or status == "422"):
                    response["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}


def _statuses(
    route: RouteContext, operation: dict[str, Any], calls: set[Callable[..., Any]]
) -> set[int]:
    statuses = set()
    if get_current_user in calls:
        statuses.add(401)
    if "{" in (route.path_format or ""):
        statuses.add(404)
    if "requestBody" in operation:
        statuses |= {400, 413, 422}
    if operation.get("parameters"):
        statuses.add(422)
    if get_store in calls:
        statuses |= {503, 507}
    if get_inference in calls:
        statuses.add(503)
    if get_inference in calls:
        statuses.add(409)
    return statuses


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every function a route depends on, through its dependencies' dependencies."""
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)
