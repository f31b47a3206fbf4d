"""Evaluations as the web process sees them: the results of a finished `evaluate` job, its
samples (paged and filtered) and its files. Always as the job's owner. Nothing here imports
torch; the `evaluate` kind checks a launch (`jobs/kinds/evaluate.py`) and the work runs in its
worker."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any, Literal

from sqlalchemy.orm import Session

from tuneforge.db.repositories.jobs import JobRepository
from tuneforge.db.tables import Job, User
from tuneforge.errors import Conflict, InvalidInput, NotFound
from tuneforge.evaluation.comparison import comparison
from tuneforge.evaluation.report import SampleFilter, matches, needs_two_models
from tuneforge.jobs.kinds.evaluate import EvaluateKind
from tuneforge.jobs.status import JobStatus
from tuneforge.storage import ArtifactStore

UNSCORED = ("vibe", "perplexity")  # suites without right or wrong answers
Format = Literal["csv", "jsonl"]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def evaluation_job(session: Session, user: User, job_id: str) -> Job:
    job = JobRepository(session, user).get(job_id)
    if job is None or job.kind != EvaluateKind.name:
        raise NotFound(f"No evaluation {job_id}.")
    return job


def finished_evaluation(session: Session, user: User, job_id: str) -> tuple[Job, dict[str, Any]]:
    """The evaluation job, once it has succeeded, and its result; `Conflict` saying why there
    are no results otherwise."""
    job = evaluation_job(session, user, job_id)
    if job.status == JobStatus.SUCCEEDED and job.result:
        return job, job.result
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING):
        raise Conflict(
            f"This evaluation is {job.status} ({job.progress:.0%} done); its results are ready "
            "once it has finished."
        )
    reason = f": {job.error}" if job.error else "."
    raise Conflict(f"This evaluation ended {job.status}, without results{reason}")


def evaluation(session: Session, user: User, job_id: str) -> dict[str, Any]:
    """The results of a finished evaluation: the metrics table, the difference as people read
    it (fine-tune vs base), the details."""
    job, result = finished_evaluation(session, user, job_id)
    compared = comparison(result["models"], result["metrics"])
    return {
        "job_id": job.id,
        "dataset_id": job.spec["dataset_id"],
        "split": job.spec["split"],
        "automatic": bool(job.spec.get("automatic")),
        **result,
        "comparison": None if compared is None else dataclasses.asdict(compared),
    }


def _rows(store: ArtifactStore, key: str) -> Iterator[dict[str, Any]]:
    with store.open(key) as lines:
        for line in lines:
            yield json.loads(line)


def samples(
    session: Session,
    store: ArtifactStore,
    user: User,
    job_id: str,
    *,
    offset: int,
    limit: int,
    which: SampleFilter | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the evaluation's samples (those passing the filter `which`) and their count."""
    _, result = finished_evaluation(session, user, job_id)
    if which is not None:
        if result["suite"] in UNSCORED:
            raise InvalidInput(
                f"The {result['suite']} suite has no right or wrong answers to filter by."
            )
        if needs_two_models(which) and len(result["models"]) < 2:
            raise InvalidInput(f"The filter {which} compares two models; this evaluation has one.")
    page: list[dict[str, Any]] = []
    total = 0
    for row in _rows(store, result["samples_key"]):
        if which is not None and not matches(row, which):
            continue
        if offset <= total < offset + limit:
            page.append(row)
        total += 1
    return page, total


def samples_file(
    session: Session, store: ArtifactStore, user: User, job_id: str, fmt: Format
) -> tuple[str, str, str]:
    """Where the evaluation's samples file in `fmt` is stored, its download name and type."""
    job, result = finished_evaluation(session, user, job_id)
    key = result["csv_key" if fmt == "csv" else "samples_key"]
    if not store.exists(key):
        raise NotFound("The samples file of this evaluation is missing from the artifact store.")
    return key, f"evaluation-{job.id}.{fmt}", MEDIA_TYPES[fmt]
