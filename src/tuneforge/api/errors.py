"""One error shape for every failure: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tuneforge import errors
from tuneforge.jobs.states import InvalidTransition
from tuneforge.storage import StorageError
from tuneforge.storage.disk_full import disk_full

log = logging.getLogger(__name__)

STATUS: dict[type[errors.DomainError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PermissionDenied: 403,
    errors.InvalidInput: 422,
    errors.Unauthenticated: 401,
    errors.RateLimited: 429,
    errors.ModelUnavailable: 503,
    errors.EngineUnavailable: 409,
    errors.InferenceFailed: 503,
    errors.DiskFull: 507,
    errors.ServerStopping: 503,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.DomainError)
    async def _domain(_: Request, exc: errors.DomainError) -> JSONResponse:
        status = next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 400)
        return error_response(status, exc.code, exc.message, exc.details)

    @app.exception_handler(InvalidTransition)
    async def _transition(_: Request, exc: InvalidTransition) -> JSONResponse:
        return error_response(409, "conflict", f"The job changed meanwhile: {exc}.")

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error: %s", exc)
        return error_response(503, "storage_unavailable", f"Artifact storage failed: {exc}")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "problem": "invalid"}
        message = f"Invalid request: {first['field']}: {first['problem']}"
        return error_response(422, "invalid_input", message, {"problems": problems})

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})  # a 405's `Allow`
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        full = disk_full(exc, request.app.state.settings.data_dir)
        if full is not None:  # any write of the web process, not only the ones that expect it
            log.error("disk full: %s", exc)
            return error_response(507, full.code, full.message, full.details)
        log.exception("unhandled error")
        return error_response(
            500, "internal_error", "Something went wrong on the server; the details are in its log."
        )
