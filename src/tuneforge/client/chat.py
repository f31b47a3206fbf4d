"""Chat through the client: the models to talk to, and an answer whole or as it is generated.
A message's content is a string, or a list of parts: `{"type": "text", "text"}` and images
(`image_part`) for vision models."""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneforge.client.base import ApiError, BaseClient, parse_sse, raise_for_error


def image_part(image: str | Path | bytes, media_type: str = "image/png") -> dict[str, Any]:
    """An image content part (`{"type": "image_url", "image_url": {"url": "data:..."}}`) from a
    file's path or its bytes (`media_type` for bytes; a path's comes from its suffix)."""
    if isinstance(image, bytes):
        data = image
    else:
        path = Path(image)
        data = path.read_bytes()
        media_type = mimetypes.guess_type(path.name)[0] or media_type
    url = f"data:{media_type};base64," + base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


class ChatClient(BaseClient):
    """The client's chat methods."""

    def chat_models(self) -> list[dict[str, Any]]:
        """Models to chat with: your fine-tuned models, then the catalog's base models."""
        items: list[dict[str, Any]] = self._call("GET", "/chat/models")["items"]
        return items

    def chat(self, model: str, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        """One whole answer: `{model, message, finish_reason, usage, engine}`. `params` are
        the chat request's other fields (`system`, `temperature`, `max_new_tokens`, ...)."""
        request = {"model": model, "messages": messages, **params, "stream": False}
        answer: dict[str, Any] = self._call(
            "POST", "/chat", json=request, timeout=self._work_timeout
        )
        return answer

    def chat_stream(
        self, model: str, messages: list[dict[str, Any]], **params: Any
    ) -> Iterator[dict[str, Any]]:
        """The answer as it is generated: `{"type": "delta", "text"}` events, then one
        `{"type": "done", ...}` with the finish reason and token counts."""
        request = {"model": model, "messages": messages, **params, "stream": True}
        with self._http.stream(
            "POST", "/chat", json=request, timeout=self._work_timeout
        ) as response:
            raise_for_error(response)
            for message in parse_sse(response.iter_lines()):
                if message is None:
                    continue
                _, event_type, data = message
                payload = json.loads(data)
                if event_type == "error":
                    raise ApiError(200, payload["code"], payload["message"])
                yield {"type": event_type, **payload}
