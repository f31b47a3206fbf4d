"""Stopping the server promptly: SIGTERM (or Ctrl-C) ends every open stream at once.

uvicorn stops by waiting for the responses in flight, and a stream of job events or a chat answer
can last for hours: `docker stop`, systemd and Kubernetes would send SIGTERM, wait, then kill.
`serve` runs uvicorn so that the signal also sets the app's `Stopping`: job event streams end
(without `end`: the job goes on, and clients resume from the last event id once the server is
back), chat streams end with an error event that says why, and whatever still runs after
`GRACE_SECONDS` is cancelled. Job workers are processes of their own and keep running; the next
server adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from tuneforge.errors import ServerStopping

T = TypeVar("T")
#: How long requests other than streams (an upload, say) may take to finish once asked to stop.
GRACE_SECONDS = 3
STOPPING_MESSAGE = "The server is stopping; send the message again once it is back."


class Stopping:
    """Set once the server is asked to stop; streams wait on it alongside their own work."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self) -> None:
        """Remember the serving event loop (call from the app's startup)."""
        self._loop = asyncio.get_running_loop()

    def set(self) -> None:
        """Safe to call from a signal handler or another thread."""
        if self._loop is None:
            self._event.set()
        else:
            self._loop.call_soon_threadsafe(self._event.set)

    def is_set(self) -> bool:
        return self._event.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the server is asked to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)

    async def until(self, source: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
        """`source`'s items until it ends; raises `ServerStopping` as soon as the server is
        asked to stop, cancelling the item `source` was working on (a chat answer stops).
        `source` is closed when this ends, however it ends."""
        stop = asyncio.ensure_future(self._event.wait())
        step: asyncio.Future[T] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(source))
                await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    raise ServerStopping(STOPPING_MESSAGE)
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            stop.cancel()
            if step is not None and not step.done():
                step.cancel()
                await asyncio.wait({step})  # `source` finishes its own cleanup
            await source.aclose()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, stopping: Stopping) -> None:
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()
        super().handle_exit(sig, frame)


def serve(app: FastAPI, *, host: str, port: int, log_level: str) -> None:
    """Run `app` (made by `create_app`) until SIGTERM or Ctrl-C, ending its streams at once."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACE_SECONDS
    )
    _Server(config, app.state.stopping).run()
