"""An OpenAI-compatible model on loopback: a real HTTP server (127.0.0.1, a thread per
connection) answering `POST /v1/chat/completions` deterministically, with a function of the
request, standing in for vLLM, Ollama or OpenAI in tests and benchmarks.

    with LlmServer(reply=lambda body: "Hello") as server:   # server.url ends with /v1
        ...
    server.requests      # every request: its body and Authorization header, in arrival order
    server.peak          # the most requests it was answering at the same time

`delay` seconds are spent on each answered request, as a model would take; with `slots`, the
server answers at most that many at once (like a server with N parallel decoding slots; the
others queue), and `busy_seconds` sums the time its slots were taken. `api_key` makes every
request without `Authorization: Bearer <api_key>` a 401; `models` makes other model names a
404; `failures` is a queue of statuses (429, 500, 503) answered, one each, to the next requests
before any is answered normally. `usage` in each answer counts words, not tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]


def echo(body: dict[str, Any]) -> str:
    """The last message's content, as the default reply."""
    return str(body["messages"][-1]["content"])


@dataclass
class LlmServer:
    reply: Reply = echo
    delay: float = 0.0
    slots: int | None = None
    api_key: str | None = None
    models: set[str] | None = None
    failures: list[int] = field(default_factory=list)
    retry_after: float | None = None  # sent with each 429/503 of `failures`
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    peak: int = 0
    busy_seconds: float = 0.0
    _active: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.Semaphore | None = None
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> LlmServer:
        self._slots = threading.BoundedSemaphore(self.slots) if self.slots else None
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, body: dict[str, Any], authorization: str | None) -> tuple[int, Any, float]:
        """The status, JSON body and Retry-After (0: none) of the answer to one request."""
        with self._lock:
            self.requests.append({"authorization": authorization, **body})
            failure = self.failures.pop(0) if self.failures else None
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "Incorrect API key provided"}}, 0
        if self.models is not None and body.get("model") not in self.models:
            return 404, {"error": {"message": f"The model {body.get('model')} does not exist"}}, 0
        if failure is not None:
            return failure, {"error": {"message": "overloaded"}}, self.retry_after or 0
        content = self._answer_in_slot(body)
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        return (
            200,
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": len(content.split()),
                    "total_tokens": len(prompt.split()) + len(content.split()),
                },
            },
            0,
        )

    def _answer_in_slot(self, body: dict[str, Any]) -> str:
        if self._slots is not None:
            self._slots.acquire()
        try:
            with self._lock:
                self._active += 1
                self.peak = max(self.peak, self._active)
            start = time.perf_counter()
            if self.delay:
                time.sleep(self.delay)
            content = self.reply(body)
            with self._lock:
                self._active -= 1
                self.busy_seconds += time.perf_counter() - start
            return content
        finally:
            if self._slots is not None:
                self._slots.release()


def _handler(model: LlmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers and httpx's pool expect
        # The headers and the body go out in two writes: without TCP_NODELAY, Nagle's algorithm
        # holds the body until the client's delayed ACK, adding ~40 ms to every answer.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}}, 0)
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, {"error": {"message": "the body is not JSON"}}, 0)
                return
            self._send(*model.answer(body, self.headers.get("authorization")))

        def _send(self, status: int, body: Any, retry_after: float) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if retry_after:
                self.send_header("Retry-After", f"{retry_after:g}")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
