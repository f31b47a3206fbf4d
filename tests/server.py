"""Run a real `tuneforge serve` process for a test, on a free port, and stop it afterwards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tuneforge.settings import Settings


def server_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """`TUNEFORGE_*` variables for a server with `settings` (its explicitly set fields, as built
    by the `make_settings` fixture), local accounts and its own job runner, plus `overrides`."""
    values = settings.model_dump(mode="json", include=settings.model_fields_set)
    values.update(auth="local", run_jobs=True)
    values.update(overrides)
    return {
        f"TUNEFORGE_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in values.items()
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_server(settings_env: dict[str, str], *, timeout: float = 30.0) -> Iterator[str]:
    """Start `python -m tuneforge serve` with `settings_env` (other `TUNEFORGE_*` variables of
    this process are dropped) and yield its base URL once `/api/v1/health` answers 200."""
    with server_process(settings_env, timeout=timeout) as (url, _):
        yield url


@contextmanager
def server_process(
    settings_env: dict[str, str], *, timeout: float = 30.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Like `running_server`, and also yields the server's process (to kill it, say)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TUNEFORGE_") and k != "PYTEST_CURRENT_TEST"  # a real server
    }
    env.update(settings_env)
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuneforge",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        def fail(reason: str) -> None:
            output.seek(0)
            log = output.read().decode(errors="replace")
            raise RuntimeError(f"{reason}; its output:\n{log}")

        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    fail(f"The server exited with code {process.returncode}")
                try:
                    if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    fail(f"The server did not become healthy within {timeout:g} s")
                time.sleep(0.1)
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
