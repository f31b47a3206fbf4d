"""The inference server: a long-lived process that keeps models loaded and streams answers.

The web process never imports torch; it sends each generation here over a Unix socket (see
`supervisor.py`, which starts this process and restarts it if it dies) and relays the stream.
Requests: `POST /generate` with a `Generate` body (images inside, base64) answers
newline-delimited JSON, one object per line: `{"status": {"phase", "message"}}` while the model
loads or the request waits for another answer, `{"delta": text}` as text arrives, then
`{"finished": {...}}`, or `{"error": {...}}` if the generation broke off (a model that fails to
load, too). Errors found before anything is sent (an unknown model, an engine that cannot serve
it, a conversation that cannot be rendered) answer with an HTTP status instead.

Each generation runs in a thread of its own and stops at the next token once its client goes
away (`ClosingStream` sets `cancelled` however the response ends), so a closed chat frees the
engine within a token. `POST /load` with a `ModelRef` loads a model without generating (the
warm start). `GET /health` reports the cache (what is loaded, its memory, how often each model
was loaded) and the generations: running now, and stopped early because their client left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from tuneforge.errors import DomainError, NotFound
from tuneforge.inference import loaders
from tuneforge.inference.cache import Loaded, ModelCache
from tuneforge.inference.engine import Delta
from tuneforge.inference.params import Generate, ModelRef
from tuneforge.inference.responses import ClosingStream
from tuneforge.models.catalog import load_catalog
from tuneforge.models.chat_template import ChatFormat, format_of
from tuneforge.settings import Settings
from tuneforge.worker_env import SETTINGS_FILE_ENV, read_worker_settings

log = logging.getLogger(__name__)
PARENT_POLL_SECONDS = 2.0
STATUS = {"not_found": 404, "engine_unavailable": 409, "model_unavailable": 503}
#: How long a first request waits for a fine-tune's llama.cpp fast path to be made and checked
#: before transformers answers it (the work goes on; later requests find it done).
PREPARE_WAIT_SECONDS = 20.0


def build_cache(settings: Settings) -> ModelCache:
    def choose(ref: Any) -> str:
        entry = load_catalog(settings.catalog_file).get(ref.base)
        if entry is None:
            raise NotFound(f"There is no model {ref.base!r} in the catalog.")
        return loaders.choose(ref, entry, loaders.verdict(ref, settings))

    return ModelCache(
        settings.inference_budget_bytes,
        choose,
        lambda name, ref, report: loaders.load(name, ref, settings, report),
        lambda engine, ref: loaders.attach(engine, ref, settings),
        lambda ref, report: loaders.prepare(ref, settings, report, wait=_prepare_wait(ref)),
    )


def _prepare_wait(ref: ModelRef) -> float | None:
    """How long a request waits for a fine-tune's fast path: `PREPARE_WAIT_SECONDS` under
    `auto` (transformers answers if it is not ready), until it is ready when llama.cpp is
    asked for by name."""
    return None if ref.engine == "llama.cpp" else PREPARE_WAIT_SECONDS


class Counters:
    """Generations running now, and how many stopped because their client went away."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.cancelled = 0

    def status(self) -> dict[str, int]:
        with self.lock:
            return {"generating": self.running, "cancelled": self.cancelled}


def create_server(settings: Settings) -> FastAPI:
    app = FastAPI(title="TuneForge inference", docs_url=None, redoc_url=None, openapi_url=None)
    cache = build_cache(settings)
    counters = Counters()
    app.state.cache = cache
    app.state.counters = counters

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"status": "ok", **cache.status(), **counters.status()}

    @app.post("/load", response_model=None)
    def load(ref: ModelRef) -> JSONResponse:
        """Load a model without generating (the warm start): a chat then finds it ready, not
        queued behind a warm-up answer."""
        try:
            cache.get(ref)
        except DomainError as exc:
            return _error(STATUS.get(exc.code, 500), exc.code, exc.message)
        return JSONResponse({"loaded": ref.base})

    @app.post("/generate", response_model=None)
    async def generate(request: Generate) -> StreamingResponse | JSONResponse:
        if request.images and not request.model.images:
            request = request.model_copy(
                update={"model": request.model.model_copy(update={"images": True})}
            )
        try:
            chat = _chat_format(settings, request.model.base)
            text = request.text(chat)
            request = request.stopping_at_calls(chat)
            cache.engine_for(request.model)
        except DomainError as exc:
            return _error(STATUS.get(exc.code, 500), exc.code, exc.message)
        except ValueError as exc:  # a conversation Gemma's template cannot render
            return _error(422, "invalid_input", str(exc))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: dict[str, Any] | None) -> None:
            line = None if item is None else json.dumps(item) + "\n"
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            except RuntimeError:  # the server is shutting down
                cancelled.set()

        name = _model_name(settings, request.model.base)
        thread = threading.Thread(
            target=_run,
            args=(cache, counters, request, text, cancelled, emit, name),
            name="generation",
            daemon=True,
        )
        thread.start()

        async def lines() -> AsyncGenerator[str, None]:
            while (line := await queue.get()) is not None:
                yield line

        return ClosingStream(lines(), media_type="application/x-ndjson", on_close=cancelled.set)

    return app


def _chat_format(settings: Settings, base: str) -> ChatFormat:
    """The chat format of the catalog model `base` (its fine-tunes speak it too)."""
    return format_of(load_catalog(settings.catalog_file).get(base))


def _model_name(settings: Settings, base: str) -> str:
    entry = load_catalog(settings.catalog_file).get(base)
    return entry.name if entry else base


def _run(
    cache: ModelCache,
    counters: Counters,
    request: Generate,
    text: str,
    cancelled: threading.Event,
    emit: Callable[[dict[str, Any] | None], None],
    name: str,
) -> None:
    """One generation, in its own thread: load (reporting what happens), then stream until the
    answer ends or `cancelled` is set."""
    with counters.lock:
        counters.running += 1
    said: list[str] = []
    finished = False

    def report(what: str) -> None:
        phase, message = {
            "loading": ("loading", f"Loading {name}…"),
            "queued": ("queued", "Queued behind another answer…"),
        }.get(what, ("loading", what))
        if not said or said[-1] != message:
            said.append(message)
            emit({"status": {"phase": phase, "message": message}})

    try:
        loaded = cache.get(request.model, report)
        finished = _stream(loaded, request, text, cancelled, emit, report)
    except Exception as exc:  # reported in the stream: the status line is already sent
        if isinstance(exc, DomainError):
            error = {"code": exc.code, "message": exc.message}
        else:
            log.exception("generation failed")
            message = str(exc) if isinstance(exc, ValueError) else "The generation failed."
            error = {"code": "generation_failed", "message": message}
        emit({"error": error})
    finally:
        with counters.lock:
            counters.running -= 1
            counters.cancelled += not finished and cancelled.is_set()
        emit(None)


def _stream(
    loaded: Loaded,
    request: Generate,
    text: str,
    cancelled: threading.Event,
    emit: Callable[[dict[str, Any] | None], None],
    report: Callable[[str], None],
) -> bool:
    """Stream the answer; whether it finished (False: cancelled first)."""
    if cancelled.is_set():  # the client left while the model loaded
        return False
    lock = getattr(loaded.engine, "exclusive_lock", None)
    if lock is not None and lock.locked():  # llama.cpp answers one request at a time
        report("queued")
    events = loaded.engine.stream(
        text, request.params, cancelled, loaded.adapter, request.image_bytes()
    )
    try:
        for event in events:
            if cancelled.is_set():
                return False
            if isinstance(event, Delta):
                emit({"delta": event.text})
            else:
                finished = {
                    "reason": event.reason,
                    "prompt_tokens": event.prompt_tokens,
                    "completion_tokens": event.completion_tokens,
                    "engine": loaded.engine.name,
                    "note": loaded.note,
                }
                emit({"finished": finished})
                return True
        return False
    finally:
        events.close()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def main() -> None:
    parser = argparse.ArgumentParser(description="TuneForge's inference server (started by serve).")
    parser.add_argument("--socket", required=True, help="Unix socket to listen on.")
    args = parser.parse_args()
    import uvicorn

    settings = read_worker_settings() if SETTINGS_FILE_ENV in os.environ else Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _exit_with_parent()
    uvicorn.run(create_server(settings), uds=args.socket, log_level=settings.log_level)


def _exit_with_parent() -> None:
    """End this process when the web process that started it is gone (even after a kill -9),
    so no orphan keeps models in memory."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    main()
