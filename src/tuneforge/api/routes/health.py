"""`GET /api/v1/health`: is the database, the storage and the job runner working?"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="`ok` when every part is ok.")
    database: str = Field(description="`ok` or why the database cannot be used.")
    storage: str = Field(description="`ok` or why the artifact store cannot be used.")
    runner: str = Field(description="`ok`, `external` (separate workers run jobs) or a reason.")
    version: str = Field(description="The TuneForge version serving this request.")


def _check_database(request: Request) -> str:
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}"
    return "ok"


def _check_storage(request: Request) -> str:
    reason: str | None = request.app.state.store.check()
    return reason or "ok"


def _check_runner(request: Request) -> str:
    runner = request.app.state.runner
    if runner is None:
        return "external"
    return "ok" if runner.alive else "stopped: the job runner thread is not running"


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request) -> JSONResponse:
    from tuneforge import __version__

    database = await run_in_threadpool(_check_database, request)
    storage = await run_in_threadpool(_check_storage, request)
    runner = _check_runner(request)
    ok = database == "ok" and storage == "ok" and runner in ("ok", "external")
    body = Health(
        status="ok" if ok else "degraded",
        database=database,
        storage=storage,
        runner=runner,
        version=__version__,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
