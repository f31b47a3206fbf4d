"""A judge on loopback: a real HTTP server that speaks OpenAI's chat-completions shape and grades
deterministically, standing in for an external judge (like moto stands in for S3).

It gives 10 when the answer contains the reference (ignoring case), else 1, and answers 401
unless `Authorization` carries the expected key. Models with special names misbehave on purpose:
`fenced` wraps its verdict in a Markdown code fence, `chatty` replies without a score, `flaky`
answers 503 to every other request for it, `down` to all of them, and `missing` is not there
(404).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.server import free_port

_SECTIONS = re.compile(
    r"Question:\n(?P<question>.*)\n\nReference answer:\n(?P<reference>.*)\n\n"
    r"Answer to grade:\n(?P<answer>.*)\Z",
    re.DOTALL,
)


@dataclass
class JudgeServer:
    key: str | None
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)  # headers and body of each

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append({"authorization": request.headers.get("authorization"), **body})
            if (
                self.key is not None
                and request.headers.get("authorization") != f"Bearer {self.key}"
            ):
                return JSONResponse({"error": {"message": "Incorrect API key"}}, status_code=401)
            model = body["model"]
            if model == "missing":
                return JSONResponse({"error": {"message": "no such model"}}, status_code=404)
            tries = sum(r["model"] == model for r in self.requests)
            if model == "down" or (model == "flaky" and tries % 2):
                return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
            return JSONResponse(_completion(model, _reply(model, body["messages"][-1]["content"])))

        return app


def _reply(model: str, prompt: str) -> str:
    sample = _SECTIONS.search(prompt)
    assert sample is not None, prompt
    right = sample["reference"].strip().lower() in sample["answer"].lower()
    verdict = json.dumps(
        {"score": 10 if right else 1, "reason": "has the reference" if right else "wrong"}
    )
    if model == "fenced":
        return f"Here is my grade:\n```json\n{verdict}\n```"
    if model == "chatty":
        return "What a lovely answer."
    return verdict


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }


@contextmanager
def judge_server(key: str | None) -> Iterator[JudgeServer]:
    """Serve a judge expecting `key` on a free loopback port; its `url` ends in `/v1`."""
    judge = JudgeServer(key)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(judge.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the judge server did not start"
        time.sleep(0.02)
    judge.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield judge
    finally:
        server.should_exit = True
        thread.join(timeout=10)
