"""Whether the configured executor can run jobs here: checked when a server or worker that runs
jobs starts, so a wrong configuration stops it with the reason instead of failing jobs later."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuneforge.settings import Settings


class ExecutorUnavailable(Exception):
    """The configured executor cannot run jobs here; the message says why and what to do."""


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
