"""How long a job has run, over all its attempts.

A resumed job keeps one row: its `started_at` is the start of its newest attempt, so
`finished_at - started_at` counts only the last part. Its status events record every move, so
the total is the sum of its running spells: from each move to `running` until the next move to
an ending (or back to the queue), or until now while it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tuneforge.db.tables import Job, utcnow
from tuneforge.jobs.status import JobStatus

#: Moves that end a running spell (cancelling still runs: the worker saves a checkpoint).
SPELL_ENDS = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
)


def run_seconds(job: Job, events: Iterable[Any] = (), now: datetime | None = None) -> float | None:
    """Seconds `job` has run over all its attempts (None before it first starts).

    `events` are its job events (rows with `type`, `data` and `created_at`; any type, oldest
    first: only `status` ones count). Without them, or when they hold no start, the newest
    attempt's `started_at` to `finished_at` (or now) is all there is to go on."""
    now = now or utcnow()
    total, started, spells = 0.0, None, 0
    for event in events:
        if event.type != "status":
            continue
        status = event.data.get("status")
        if status == JobStatus.RUNNING:
            started = event.created_at
            spells += 1
        elif status in SPELL_ENDS and started is not None:
            total += max((event.created_at - started).total_seconds(), 0.0)
            started = None
    if started is not None:  # running now (or its end was not read yet)
        total += max(((job.finished_at or now) - started).total_seconds(), 0.0)
    if spells:
        return total
    if job.started_at is None:
        return None
    return max(((job.finished_at or now) - job.started_at).total_seconds(), 0.0)
