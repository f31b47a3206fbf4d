"""Chat through the client: the models to talk to, and an answer whole or as it is generated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tuneforge.client.base import ApiError, BaseClient, parse_sse, raise_for_error


class ChatClient(BaseClient):
    """The client's chat methods."""

    def chat_models(self) -> list[dict[str, Any]]:
        """Models to chat with: your fine-tuned models, then the catalog's base models."""
        items: list[dict[str, Any]] = self._call("GET", "/chat/models")["items"]
        return items

    def chat(self, model: str, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
        """One whole answer: `{model, message, finish_reason, usage, engine}`. `params` are
        the chat request's other fields (`system`, `temperature`, `max_new_tokens`, ...)."""
        request = {"model": model, "messages": messages, **params, "stream": False}
        answer: dict[str, Any] = self._call(
            "POST", "/chat", json=request, timeout=self._work_timeout
        )
        return answer

    def chat_stream(
        self, model: str, messages: list[dict[str, str]], **params: Any
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
