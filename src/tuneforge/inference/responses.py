"""A streamed HTTP response that lets go of what produces it when the client goes away.

When a client disconnects, Starlette (with uvicorn's ASGI 2.3) notices the `http.disconnect`
message, cancels the task that sends the body, and returns: it never closes the body iterator,
and never tells a thread that feeds it. A generation behind the stream would run on (and, in
llama.cpp, keep the engine locked) until garbage collection happened to close it. This response
closes its body iterator and calls `on_close` however it ends, so the inference server stops
generating within a token and the web process closes its connection to the inference server.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class ClosingStream(StreamingResponse):
    body_iterator: AsyncGenerator[str, None]

    def __init__(
        self,
        content: AsyncGenerator[str, None],
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()
            await self.body_iterator.aclose()
