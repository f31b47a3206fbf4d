"""The one place that picks the job runner from `settings.executor`: local processes or Ray.

Both runners have the same face (`Runner`): `start()` begins their loop, `tick()` does one round
(settle lost jobs, deliver cancels, take queued jobs), `stop()` ends the loop and leaves running
jobs running (a new runner adopts them), `alive` says whether the loop runs.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from tuneforge.settings import Settings


class ExecutorUnavailable(Exception):
    """The configured executor cannot run jobs here; the message says why and what to do."""


class Runner(Protocol):
    def start(self) -> None: ...

    def stop(self, *, terminate_workers: bool = False) -> None: ...

    @property
    def alive(self) -> bool: ...

    def tick(self) -> None: ...


def check_executor(settings: Settings) -> None:
    """Refuse, with the reason, a configuration the executor cannot run jobs with (checked when
    a server or worker that runs jobs starts)."""
    if settings.executor != "ray":
        return
    if importlib.util.find_spec("ray") is None:
        raise ExecutorUnavailable(
            "TUNEFORGE_EXECUTOR=ray needs Ray on this machine: install the `ray` extra "
            "(pip install 'tuneforge[ray]')."
        )
    if not settings.ray_address:
        raise ExecutorUnavailable(
            "TUNEFORGE_EXECUTOR=ray needs the cluster to join: set TUNEFORGE_RAY_ADDRESS "
            "(`auto` for the cluster this machine's `ray start` joined, or `host:6379`)."
        )
    url = settings.resolved_storage_url
    if url.startswith("file://"):
        raise ExecutorUnavailable(
            f"TUNEFORGE_EXECUTOR=ray needs an artifact store every Ray node reaches, and {url} "
            "is a folder on this machine only: jobs placed on other nodes would write their "
            "checkpoints, models and exports where this server never sees them. Set "
            "TUNEFORGE_STORAGE_URL to s3://bucket/prefix or gs://bucket/prefix (the `cloud` "
            "extra)."
        )


def make_runner(settings: Settings, factory: sessionmaker[Session]) -> Runner:
    """The runner `settings.executor` names, checked (`check_executor`)."""
    check_executor(settings)
    if settings.executor == "ray":
        from tuneforge.jobs.ray_runner import RayRunner

        return RayRunner(settings, factory)
    from tuneforge.jobs.runner import LocalRunner

    return LocalRunner(settings, factory)
