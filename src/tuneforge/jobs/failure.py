"""Failures caused by a job's settings, and which settings.

A domain error that names the settings behind it (`details["fields"]`, such as a NaN loss
naming `learning_rate`) is recorded with the failed job as `result["error_fields"]`, so the run
page can offer "Edit and retry" with those fields highlighted instead of Resume, which would
only fail again.
"""

from __future__ import annotations

from typing import Any

from tuneforge.db.tables import Job
from tuneforge.errors import DomainError
from tuneforge.jobs.status import JobStatus

FIELDS_KEY = "error_fields"


def failure_fields(error: DomainError) -> dict[str, Any]:
    """The columns a job that failed with `error` records besides its message."""
    fields = error.details.get("fields")
    recorded: dict[str, Any] = {"error": error.message}
    if isinstance(fields, list) and fields:
        recorded["result"] = {FIELDS_KEY: [str(name) for name in fields]}
    return recorded


def failed_fields(job: Job) -> list[str]:
    """The settings a failed job's error named (empty: not a failure of its settings)."""
    if job.status != JobStatus.FAILED or not isinstance(job.result, dict):
        return []
    return [str(name) for name in job.result.get(FIELDS_KEY) or []]
