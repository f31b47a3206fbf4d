"""Starts the inference server process on first use and restarts it whenever it dies.

The web process owns one `InferenceProcess`. Nothing is spawned until the first chat asks for it
(`ensure_started`), so a studio that never chats never imports torch. A process that exits is
restarted after a short pause that grows while it keeps dying, and its log goes to
`{data_dir}/logs/inference.log`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from tuneforge.settings import Settings
from tuneforge.worker_env import worker_environment, write_worker_settings

log = logging.getLogger(__name__)
MODULE = "tuneforge.inference.server"
MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0  # a process that lived this long was healthy: reset the backoff
#: How long a stopping server waits for the inference server before killing it: it keeps nothing
#: worth saving (loaded models are a cache), and a model still loading would hold it for minutes.
STOP_SECONDS = 3.0


class InferenceProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.socket = settings.inference_socket
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive and listening."""
        process = self._process
        return process is not None and process.poll() is None and self.socket.exists()

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._spawn()
                self._thread = threading.Thread(
                    target=self._watch, name="inference-supervisor", daemon=True
                )
                self._thread.start()

    def _spawn(self) -> None:
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.socket.parent, 0o700)  # only this user may talk to the server
        self.socket.unlink(missing_ok=True)
        logs = self.settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = worker_environment(self.settings, write_worker_settings(self.settings, "inference"))
        with open(logs / "inference.log", "ab") as out:
            self._process = subprocess.Popen(
                [sys.executable, "-m", MODULE, "--socket", str(self.socket)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        log.info("inference server started (pid %s)", self._process.pid)

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            assert self._process is not None
            started = time.monotonic()
            code = self._process.wait()
            if self._stopping.is_set():
                return
            backoff = (
                1.0
                if time.monotonic() - started > STABLE_SECONDS
                else min(backoff * 2, MAX_BACKOFF)
            )
            log.warning("inference server exited with code %s; restarting in %.0f s", code, backoff)
            if self._stopping.wait(backoff):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self._spawn()
                    self.restarts += 1

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.socket.unlink(missing_ok=True)
