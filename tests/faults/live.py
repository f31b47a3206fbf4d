"""Streams caught in the middle (chat answers, job events) and the inference server behind them,
for fault tests against a real `tuneforge serve`."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import bearer
from tuneforge.inference.supervisor import MODULE as INFERENCE_MODULE

#: A long sampled answer of the random test model: it runs until something stops it.
LONG_ANSWER = {
    "model": "tiny-random-gemma3",
    "messages": [{"role": "user", "content": "Say hello."}],
    "temperature": 1.0,
    "max_new_tokens": 8000,
}
#: The same for `/v1/chat/completions`.
OPENAI_LONG_ANSWER = {
    "model": LONG_ANSWER["model"],
    "messages": LONG_ANSWER["messages"],
    "temperature": 1.0,
    "max_tokens": 8000,
    "stream": True,
}
WORDS_FIRST = 3  # text pieces read before the answer counts as under way


def _carries_text(line: str) -> bool:
    return line.startswith("data: ") and ('"text": "' in line or '"content": "' in line)


def _ends(line: str) -> bool:
    return line in ("event: done", "data: [DONE]") or '"finish_reason": "' in line


@contextmanager
def live_answer(http: httpx.Client, path: str, body: dict[str, Any]) -> Iterator[Iterator[str]]:
    """A streamed answer (`/api/v1/chat` or `/v1/chat/completions`) caught after its first
    words: yields the iterator of its remaining lines. The random model's sampled answer can end
    at any token, at a point that depends on the machine's rounding: seeds are tried until an
    answer is still going after its first words."""
    for seed in range(3, 13):
        with http.stream("POST", path, json={**body, "seed": seed}) as response:
            assert response.status_code == 200, response.read()
            lines = response.iter_lines()
            pieces = 0
            for line in lines:
                if _ends(line):
                    break
                pieces += _carries_text(line)
                if pieces == WORDS_FIRST:
                    yield lines
                    return
    pytest.fail("every sampled answer ended within its first words")


def inference_pid(server: subprocess.Popen[bytes]) -> int:
    """The process id of the inference server that `tuneforge serve` started."""
    for child in psutil.Process(server.pid).children():
        if INFERENCE_MODULE in child.cmdline():
            return child.pid
    raise AssertionError("the server has no inference server process")


def sse_events(lines: list[str]) -> list[tuple[str, str]]:
    """(event, data) pairs of Server-Sent Event lines; comments and ids are left out."""
    pairs, event = [], "message"
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            pairs.append((event, line.removeprefix("data: ")))
            event = "message"
    return pairs


class Follower(threading.Thread):
    """Follows a job's event stream in the background until the stream ends."""

    def __init__(self, url: str, token: str, job_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.job_id = url, token, job_id
        self.lines: list[str] = []
        self.error: Exception | None = None
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.url, headers=bearer(self.token), timeout=60) as http,
                http.stream("GET", f"/api/v1/jobs/{self.job_id}/events") as response,
            ):
                response.raise_for_status()
                for line in response.iter_lines():
                    self.lines.append(line)
        except Exception as exc:  # an abrupt end: the test says so
            self.error = exc
        finally:
            self.ended.set()

    def wait_streaming(self, timeout: float = 10.0) -> None:
        """Wait until the stream has carried its first event."""
        deadline = time.monotonic() + timeout
        while not any(line.startswith("id: ") for line in self.lines):
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "the event stream sent nothing"
            time.sleep(0.05)
