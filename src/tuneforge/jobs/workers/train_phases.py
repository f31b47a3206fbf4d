"""The train worker's phases as the run page shows them: what the run was expected to take (on
its first attempt), the model stored file by file with progress, and what the run measured
(peak memory, speed, the timings of each phase) kept for the next estimates."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from tuneforge.db.tables import Dataset, Job, utcnow
from tuneforge.hardware import detect_hardware
from tuneforge.jobs.context import JobContext
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.estimate import (
    CalibrationCache,
    Timings,
    calibration_key,
    estimate,
    measured_run,
)
from tuneforge.training.estimate.phases import ESTIMATE_METRIC
from tuneforge.training.recipe import Outcome
from tuneforge.training.spec import TrainingBase

#: The share of the progress bar the steps fill; storing the model fills the rest.
TRAINING_SHARE = 0.9


def calibration(ctx: JobContext) -> CalibrationCache:
    return CalibrationCache(ctx.settings.data_dir / "calibration.json")


def attempt_started(ctx: JobContext) -> datetime:
    """When this attempt of the job started (the runner's clock): the worker's own start-up
    counts as loading."""
    with ctx.transaction() as session:
        job = session.get(Job, ctx.job_id)
        started = job.started_at if job is not None else None
    return started or utcnow()


def report_estimate(
    ctx: JobContext, spec: TrainingBase, entry: CatalogEntry, dataset: Dataset
) -> None:
    """What the whole run is expected to take, as the `estimate/duration_seconds` metric at
    step 0 (the run page shows it beside what it took) and a log line with its phases."""
    expected = estimate(
        spec,
        entry,
        dataset.stats,
        dataset.splits.get("train", 0),
        detect_hardware(),
        calibration(ctx),
        test_rows=dataset.splits.get("test", 0),
    )
    ctx.metrics({ESTIMATE_METRIC: expected.duration_seconds}, 0)
    parts = ", ".join(
        f"{name} {seconds:.0f} s" for name, seconds in expected.phases if seconds >= 1
    )
    ctx.log(f"expected to take about {expected.duration_seconds:.0f} s in all ({parts})")


def store_model(ctx: JobContext, key: str, directory: Path) -> None:
    """Upload the model directory, saying which file of how many (and how big) it is storing."""
    share = 1 - TRAINING_SHARE

    def told(done: int, total: int, name: str) -> None:
        size = (directory / name).stat().st_size / 1e6
        ctx.progress(
            TRAINING_SHARE + share * done / max(total, 1),
            f"saving the model: storing {name} ({size:.1f} MB), file {done + 1} of {total}",
        )

    ctx.store.put_dir(key, directory, progress=told)


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """A block's duration so far: `with timed() as seconds: ...; seconds()`."""
    started = time.perf_counter()
    yield lambda: time.perf_counter() - started


def record_run(
    ctx: JobContext,
    spec: TrainingBase,
    entry: CatalogEntry,
    dataset: Dataset,
    outcome: Outcome,
    start_seconds: float,
    store_seconds: float,
) -> None:
    """Keep this run's peak memory and speed, beside the models' figures for this run, and its
    phase timings for the next estimates here."""
    phases = outcome.phases

    def per(seconds: str, amount: str) -> float | None:
        return phases[seconds] / phases[amount] if phases.get(amount) else None

    timings = Timings(
        load_seconds=start_seconds + phases.get("load_seconds", 0.0),
        eval_seconds_per_token=per("eval_seconds", "eval_tokens"),
        sample_seconds_per_token=per("sample_seconds", "sample_tokens"),
        checkpoint_seconds=per("checkpoint_seconds", "checkpoints"),
        save_seconds=phases.get("save_seconds", 0.0) + store_seconds,
    )
    hardware = detect_hardware()
    modelled = estimate(  # the models alone: no measured run corrects them
        spec,
        entry,
        dataset.stats,
        dataset.splits.get("train", 0),
        hardware,
        test_rows=dataset.splits.get("test", 0),
    )
    measured = outcome.tokens_per_second > 0  # an attempt resumed at its last step took none
    calibration(ctx).record(
        calibration_key(spec, entry, hardware, outcome.precision),
        measured_run(spec, modelled, outcome.peak_rss_bytes, outcome.tokens_per_second)
        if measured
        else None,
        timings,
    )
