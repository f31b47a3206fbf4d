"""The local executor: runs each job in its own OS process on this machine.

One loop does three things every `poll_interval`: it settles jobs whose worker died or stopped
beating its heart (`worker lost`), it delivers cancel requests (SIGTERM, then SIGKILL after
`cancel_timeout`), and it claims queued jobs while fewer than `max_concurrent_jobs` run here.
Workers run in sessions of their own, so they outlive a restart of the server: a new runner
adopts the live ones by their process id and settles the dead ones at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import sys
from datetime import timedelta

import psutil
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.repositories.jobs import (
    active_count_on,
    active_jobs,
    cancelling_on,
    set_worker_pid,
)
from tuneforge.db.session import transaction
from tuneforge.db.tables import Job, utcnow
from tuneforge.hardware import detect_hardware
from tuneforge.jobs.queue import claim_next
from tuneforge.jobs.resources import job_resources
from tuneforge.jobs.runner_loop import RunnerLoop
from tuneforge.settings import Settings
from tuneforge.worker_env import settings_file, worker_environment, write_worker_settings

log = logging.getLogger(__name__)
WORKER_MODULE = "tuneforge.jobs"


class LocalRunner(RunnerLoop):
    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        super().__init__(settings)
        self.factory = factory
        self.host = socket.gethostname()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._signalled: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self, *, terminate_workers: bool = False) -> None:
        """Stop the loop. Workers keep running (a new runner adopts them) unless told otherwise."""
        self.stop_loop()
        if terminate_workers:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)

    def tick(self) -> None:
        self.sweep()
        self.deliver_cancels()
        self.claim()

    # -- worker processes --------------------------------------------------------------------
    def _process(self, job: Job) -> psutil.Process | None:
        """The live worker process of a job on this host, or None."""
        proc = self._procs.get(job.id)
        if proc is not None:
            return psutil.Process(proc.pid) if proc.poll() is None else None
        if job.worker_pid is None:
            return None
        try:
            candidate = psutil.Process(job.worker_pid)
            cmdline = candidate.cmdline()
            if candidate.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return candidate if WORKER_MODULE in cmdline and job.id in cmdline else None

    def _exit_reason(self, job: Job) -> str:
        proc = self._procs.get(job.id)
        code = proc.returncode if proc is not None else None
        if code is not None and code < 0:
            return f"worker lost: process {proc.pid} was killed by signal {-code}"  # type: ignore[union-attr]
        if code is not None:
            return f"worker lost: process {proc.pid} exited with code {code}"  # type: ignore[union-attr]
        return f"worker lost: process {job.worker_pid} is gone"

    def _spawn(self, job_id: str) -> subprocess.Popen[bytes]:
        logs = self.settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = write_worker_settings(self.settings, job_id)
        try:
            with open(logs / f"job-{job_id}.log", "ab") as out:
                return subprocess.Popen(
                    [sys.executable, "-m", WORKER_MODULE, job_id],
                    env=worker_environment(self.settings, path),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError:
            path.unlink(missing_ok=True)
            raise

    # -- the three duties ----------------------------------------------------------------------
    def sweep(self) -> None:
        """Settle active jobs whose worker is gone or silent for longer than the timeout."""
        timeout = timedelta(seconds=self.settings.heartbeat_timeout)
        with transaction(self.factory) as session:
            for job in active_jobs(session):
                reason = None
                local = job.worker_host == self.host
                if local and job.worker_pid is not None and self._process(job) is None:
                    reason = self._exit_reason(job)
                elif job.heartbeat_at is not None and utcnow() - job.heartbeat_at > timeout:
                    reason = f"worker lost: no heartbeat for {self.settings.heartbeat_timeout:g} s"
                    if local:
                        self._kill(job, signal.SIGKILL)
                if reason is not None:
                    self._settle(session, job, reason)
        for job_id, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[job_id]
                self._signalled.discard(job_id)
                settings_file(self.settings, job_id).unlink(missing_ok=True)  # if never read

    def _kill(self, job: Job, sig: signal.Signals) -> None:
        process = self._process(job)
        if process is not None:
            with contextlib.suppress(psutil.Error):  # it ended on its own meanwhile
                process.send_signal(sig)

    def deliver_cancels(self) -> None:
        """SIGTERM a cancelling job's worker once; SIGKILL it when it overstays the timeout."""
        grace = timedelta(seconds=self.settings.cancel_timeout)
        with transaction(self.factory) as session:
            for job in cancelling_on(session, self.host):
                if job.id not in self._signalled:
                    self._kill(job, signal.SIGTERM)
                    self._signalled.add(job.id)
                elif job.cancel_requested_at and utcnow() - job.cancel_requested_at > grace:
                    self._kill(job, signal.SIGKILL)
                    self._settle(
                        session,
                        job,
                        (f"did not stop within {self.settings.cancel_timeout:g} s; killed"),
                    )

    def claim(self) -> None:
        """Start queued jobs while there is room on this host."""
        while not self._stop.is_set():
            with transaction(self.factory) as session:
                if active_count_on(session, self.host) >= self.settings.max_concurrent_jobs:
                    return
                job = claim_next(session, self.host)
                if job is not None:  # what it asks for, for the Jobs page
                    gpus = detect_hardware().has_cuda
                    asks = job_resources(session, self.settings, job, has_gpus=gpus)
                    job.resources = asks.model_dump()
            if job is None:
                return
            try:
                proc = self._spawn(job.id)
            except OSError as exc:
                with transaction(self.factory) as session:
                    row = session.get(Job, job.id)
                    if row is not None:
                        self._settle(session, row, f"could not start a worker: {exc}")
                continue
            self._procs[job.id] = proc
            with transaction(self.factory) as session:
                set_worker_pid(session, job.id, proc.pid)
            log.info("job %s (%s) started in process %s", job.id, job.kind, proc.pid)
