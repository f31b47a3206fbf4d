"""The hostile corpus uploaded to a real server: every file gets a 4xx that says what to fix, or
is read (with its warning); never a 5xx, never a hang; the server's peak memory stays bounded."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import add_user, bearer
from tests.data.hostile import hostile_corpus
from tests.server import server_env, server_process

pytestmark = pytest.mark.slow
PEAK_RSS_LIMIT = 2 << 30
PER_FILE_SECONDS = 30


def peak_rss(pid: int) -> int:
    """The process's high-water resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_hostile_uploads(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    token = add_user(settings, "mallory")
    cases = hostile_corpus(tmp_path / "corpus")
    assert len(cases) >= 30
    wrong: list[str] = []
    with server_process(server_env(settings, run_jobs=False)) as (url, server):
        with httpx.Client(base_url=url, headers=bearer(token), timeout=PER_FILE_SECONDS) as http:
            for case in cases:
                started = time.monotonic()
                with case.path.open("rb") as handle:
                    response = http.post(
                        "/api/v1/datasets", files={"file": (case.filename, handle)}
                    )
                elapsed = time.monotonic() - started
                body = response.json()
                phrase = case.phrase.lower()
                if response.status_code >= 500 or elapsed > PER_FILE_SECONDS:
                    wrong.append(f"{case.name}: {response.status_code} in {elapsed:.1f} s")
                elif case.outcome == "error":
                    message = body.get("error", {}).get("message", "")
                    if not (400 <= response.status_code < 500 and phrase in message.lower()):
                        wrong.append(f"{case.name}: {response.status_code} {message[:200]!r}")
                elif response.status_code != 201:
                    wrong.append(f"{case.name}: expected a dataset, got {response.text[:200]}")
                elif case.outcome == "warning" and not any(
                    phrase in w.lower() for w in body["warnings"]
                ):
                    wrong.append(
                        f"{case.name}: no warning with {case.phrase!r}: {body['warnings']}"
                    )
            assert http.get("/api/v1/health").json()["status"] == "ok"
        peak = peak_rss(server.pid)
    assert wrong == []
    print(f"peak server RSS over {len(cases)} hostile uploads: {peak / 2**20:.0f} MiB")
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
