"""The web process's side of the inference server: send a generation, relay its stream.

It never imports torch. The server is started on first use; while it starts (or restarts after
a crash) connections are retried for up to `STARTUP_SECONDS`; a crash in the middle of an answer
ends it with `InferenceFailed`. Leaving a stream early (closing or cancelling its iterator) closes
the connection, and the server stops that generation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from tuneforge.errors import (
    DomainError,
    EngineUnavailable,
    InferenceFailed,
    InvalidInput,
    ModelUnavailable,
    NotFound,
)
from tuneforge.inference.engine import Delta, Finished, Status
from tuneforge.inference.params import Generate, ModelRef
from tuneforge.inference.supervisor import InferenceProcess

STARTUP_SECONDS = 90.0
BROKE_OFF = (
    "The inference server stopped in the middle of the answer; it is being restarted, so "
    "send the message again in a moment."
)


ERRORS: dict[str, type[DomainError]] = {
    "not_found": NotFound,
    "engine_unavailable": EngineUnavailable,
    "invalid_input": InvalidInput,
    "model_unavailable": ModelUnavailable,
}


class InferenceClient:
    def __init__(self, process: InferenceProcess) -> None:
        self.process = process
        transport = httpx.AsyncHTTPTransport(uds=str(process.socket))
        self._client = httpx.AsyncClient(
            transport=transport,
            base_url="http://inference",
            timeout=httpx.Timeout(10.0, read=None),  # loading a model may take minutes
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def health(self) -> dict[str, Any]:
        response = await self._request("GET", "/health")
        try:
            await response.aread()
            return response.json()  # type: ignore[no-any-return]
        finally:
            await response.aclose()

    async def load(self, ref: ModelRef) -> None:
        """Load a model into the inference server without generating."""
        response = await self._request("POST", "/load", json=ref.model_dump(mode="json"))
        try:
            await response.aread()
            if response.status_code != 200:
                raise _error(response.json().get("error", {}))
        finally:
            await response.aclose()

    async def stream(self, request: Generate) -> AsyncGenerator[Delta | Finished, None]:
        """The generation's text and its end; raises a `DomainError` when it cannot start or
        breaks off."""
        events = self.events(request)
        try:
            async for event in events:
                if not isinstance(event, Status):
                    yield event
        finally:
            await events.aclose()

    async def events(self, request: Generate) -> AsyncGenerator[Delta | Finished | Status, None]:
        """Like `stream`, with `Status` events first that say what happens before the first
        token: starting the inference server, loading the model, waiting behind another answer."""
        if not self.process.running:
            yield Status("starting", "Starting the inference server…")
        response = await self._request("POST", "/generate", json=request.model_dump(mode="json"))
        try:
            if response.status_code != 200:
                await response.aread()
                raise _error(response.json().get("error", {}))
            async for line in response.aiter_lines():
                if not line:
                    continue
                item = json.loads(line)
                if "delta" in item:
                    yield Delta(item["delta"])
                elif "status" in item:
                    yield Status(item["status"]["phase"], item["status"]["message"])
                elif "finished" in item:
                    done = item["finished"]
                    yield Finished(
                        done["reason"],
                        done["prompt_tokens"],
                        done["completion_tokens"],
                        done.get("engine", ""),
                        done.get("note"),
                    )
                else:
                    raise _error(item.get("error", {}))
        except httpx.TransportError as exc:  # the server died in the middle of the answer
            raise InferenceFailed(BROKE_OFF) from exc
        finally:
            await response.aclose()

    async def complete(self, request: Generate) -> tuple[str, Finished]:
        """The whole answer at once."""
        pieces: list[str] = []
        async for event in self.stream(request):
            if isinstance(event, Delta):
                pieces.append(event.text)
            elif isinstance(event, Finished):
                return "".join(pieces), event
        raise InferenceFailed("The inference server ended the answer without finishing it.")

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send, starting the server if needed and waiting while it comes up."""
        self.process.ensure_started()
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                request = self._client.build_request(method, path, **kwargs)
                return await self._client.send(request, stream=True)
            except (httpx.ConnectError, FileNotFoundError) as exc:
                if time.monotonic() > deadline:
                    raise InferenceFailed(
                        "The inference server did not start; see logs/inference.log in the "
                        "data directory."
                    ) from exc
                await asyncio.sleep(0.25)
            except httpx.TransportError as exc:  # it died while taking the request
                raise InferenceFailed(BROKE_OFF) from exc


def _error(body: dict[str, Any]) -> DomainError:
    kind = ERRORS.get(str(body.get("code")), InferenceFailed)
    return kind(str(body.get("message") or "The inference server failed."))
