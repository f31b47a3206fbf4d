"""The inference server: a long-lived process that keeps models loaded and streams answers.

The web process never imports torch; it sends each generation here over a Unix socket (see
`supervisor.py`, which starts this process and restarts it if it dies) and relays the stream.
Requests: `POST /generate` with a `Generate` body answers newline-delimited JSON, one object per
line: `{"delta": text}` as text arrives, then `{"finished": {...}}`, or `{"error": {...}}` if the
generation broke off. Errors found before the first token answer with an HTTP status instead.
`GET /health` reports the cache: what is loaded, its memory, how often each model was loaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from tuneforge.errors import DomainError, NotFound
from tuneforge.inference import loaders
from tuneforge.inference.cache import ModelCache
from tuneforge.inference.engine import Delta
from tuneforge.inference.params import Generate
from tuneforge.models.catalog import load_catalog
from tuneforge.settings import SETTINGS_ENV, Settings

log = logging.getLogger(__name__)
PARENT_POLL_SECONDS = 2.0
STATUS = {"not_found": 404, "engine_unavailable": 409, "model_unavailable": 503}


def build_cache(settings: Settings) -> ModelCache:
    def choose(ref: Any) -> str:
        entry = load_catalog(settings.catalog_file).get(ref.base)
        if entry is None:
            raise NotFound(f"There is no model {ref.base!r} in the catalog.")
        return loaders.choose(ref, entry)

    return ModelCache(
        settings.inference_budget_bytes,
        choose,
        lambda name, ref: loaders.load(name, ref, settings),
        lambda engine, ref: loaders.attach(engine, ref, settings),
    )


def create_server(settings: Settings) -> FastAPI:
    app = FastAPI(title="TuneForge inference", docs_url=None, redoc_url=None, openapi_url=None)
    cache = build_cache(settings)
    app.state.cache = cache

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"status": "ok", **cache.status()}

    @app.post("/generate", response_model=None)
    def generate(request: Generate) -> StreamingResponse | JSONResponse:
        try:
            text = request.text()
            loaded = cache.get(request.model)
        except DomainError as exc:
            return _error(STATUS.get(exc.code, 500), exc.code, exc.message)
        except ValueError as exc:  # a conversation Gemma's template cannot render
            return _error(422, "invalid_input", str(exc))
        cancelled = threading.Event()

        def lines() -> Iterator[str]:
            events = loaded.engine.stream(text, request.params, cancelled, loaded.adapter)
            try:
                for event in events:
                    if isinstance(event, Delta):
                        yield json.dumps({"delta": event.text}) + "\n"
                    else:
                        finished = {
                            "reason": event.reason,
                            "prompt_tokens": event.prompt_tokens,
                            "completion_tokens": event.completion_tokens,
                            "engine": loaded.engine.name,
                        }
                        yield json.dumps({"finished": finished}) + "\n"
            except Exception as exc:  # reported in the stream: the status line is already sent
                log.exception("generation failed")
                message = str(exc) if isinstance(exc, ValueError) else "The generation failed."
                yield json.dumps({"error": {"code": "generation_failed", "message": message}})
                yield "\n"
            finally:
                cancelled.set()  # the client went away, or the stream ended
                events.close()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def main() -> None:
    parser = argparse.ArgumentParser(description="TuneForge's inference server (started by serve).")
    parser.add_argument("--socket", required=True, help="Unix socket to listen on.")
    args = parser.parse_args()
    import uvicorn

    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
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
