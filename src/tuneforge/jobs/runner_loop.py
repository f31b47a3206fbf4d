"""The loop every job runner runs: one `tick()` every `poll_interval`, in a thread of its own,
until `stop_loop()`. A tick that fails is logged and tried again at the next one. Also how a
runner settles a job whose worker it lost."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

from sqlalchemy.orm import Session

from tuneforge.db.tables import Job
from tuneforge.jobs.states import StaleTransition, transition
from tuneforge.jobs.status import JobStatus
from tuneforge.settings import Settings

log = logging.getLogger(__name__)


class RunnerLoop(ABC):
    #: The loop thread's name (in thread dumps and logs).
    thread_name = "tuneforge-runner"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def tick(self) -> None:
        """One round: settle lost jobs, deliver cancels, take queued jobs."""

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop_loop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("%s: a tick failed; trying again", self.thread_name)
            self._stop.wait(self.settings.poll_interval)

    def _settle(self, session: Session, job: Job, reason: str) -> None:
        """Fail (or, if it was stopping, cancel) a job whose worker is lost, with the reason."""
        target = JobStatus.CANCELLED if job.status == JobStatus.CANCELLING else JobStatus.FAILED
        try:
            transition(session, job, target, error=reason)
            log.warning("job %s %s: %s", job.id, target.value, reason)
        except StaleTransition:
            pass  # the worker settled it itself in the meantime
