"""Request body limits, enforced while the body streams in (Content-Length is not trusted)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Answers 413 once a body passes its limit: `upload` bytes on upload routes, the limit that
    `path_limits` gives a path (chat requests carry images), `default` else.

    Upload routes are the `upload_paths`, and the paths that one of `upload_patterns` matches
    whole (for routes with ids in them, like the web UI's upload widgets).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        default: int,
        upload: int,
        upload_paths: frozenset[str],
        upload_patterns: Sequence[re.Pattern[str]] = (),
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.default = default
        self.upload = upload
        self.upload_paths = upload_paths
        self.upload_patterns = upload_patterns
        self.path_limits = dict(path_limits or {})

    def _is_upload(self, path: str) -> bool:
        return path in self.upload_paths or any(p.fullmatch(path) for p in self.upload_patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.upload if self._is_upload(path) else self.path_limits.get(path, self.default)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, limit)
            return
        seen = 0
        started = rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not rejected:
                    rejected = True
                    if not started:
                        await _reject(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 was the answer; whatever the app says next is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not rejected:
                raise


async def _reject(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "too_large",
                "message": f"The request body is larger than the limit of {limit:,} bytes.",
                "details": {"limit": limit},
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
