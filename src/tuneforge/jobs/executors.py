"""The one place that picks the job runner from `settings.executor`: local processes or Ray.

Both runners have the same face (`Runner`): `start()` begins their loop, `tick()` does one round
(settle lost jobs, deliver cancels, take queued jobs), `stop()` ends the loop and leaves running
jobs running (a new runner adopts them), `alive` says whether the loop runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tuneforge.jobs.executor_check import check_executor

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from tuneforge.settings import Settings


class Runner(Protocol):
    def start(self) -> None: ...

    def stop(self, *, terminate_workers: bool = False) -> None: ...

    @property
    def alive(self) -> bool: ...

    def tick(self) -> None: ...


def make_runner(settings: Settings, factory: sessionmaker[Session]) -> Runner:
    """The runner `settings.executor` names, checked (`check_executor`)."""
    check_executor(settings)
    if settings.executor == "ray":
        from tuneforge.jobs.ray_runner import RayRunner

        return RayRunner(settings, factory)
    from tuneforge.jobs.runner import LocalRunner

    return LocalRunner(settings, factory)
