"""The `evaluate` job: one or two models answer samples of a processed dataset's split, scored
by a suite. The per-sample rows go to the artifact store under the job's prefix as
`samples.jsonl` and `samples.csv`; the metrics table is the job's result."""

from __future__ import annotations

from typing import Any

from tuneforge.db.tables import User
from tuneforge.evaluation.report import LABELS, csv_table, jsonl
from tuneforge.evaluation.run import run_evaluation
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.jobs.context import JobContext
from tuneforge.services.chat import ChatModel
from tuneforge.services.datasets import processed_records
from tuneforge.services.errors import InvalidInput
from tuneforge.services.evaluations import evaluation_dataset, evaluation_models

PROGRESS_REPORTS = 50  # progress events per model, at most (a cancel is checked every sample)


def _inputs(ctx: JobContext, spec: EvaluationSpec) -> tuple[list[dict[str, Any]], list[ChatModel]]:
    """The split's rows and the models, checked again as the owner (either may have gone)."""
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The evaluation's owner no longer exists.")
        dataset = evaluation_dataset(session, owner, spec)
        models = evaluation_models(session, owner, ctx.settings, spec)
        session.expunge(dataset)
    return processed_records(ctx.store, dataset, spec.split), models


def run(spec: EvaluationSpec, ctx: JobContext) -> dict[str, Any]:
    records, models = _inputs(ctx, spec)

    def on_sample(label: str, total: int, done: int) -> None:
        ctx.check_cancelled()
        if done % max(1, total // PROGRESS_REPORTS) == 0 or done == total:
            fraction = (LABELS.index(label) * total + done) / (len(models) * total)
            ctx.progress(fraction, f"model {label}: {done}/{total}")

    ctx.log(f"evaluating {' and '.join(m.name for m in models)} ({spec.suite})")
    outcome = run_evaluation(
        spec, [m.ref for m in models], records, ctx.settings, on_sample, ctx.cancel_event
    )
    labels = LABELS[: len(models)]
    samples_key = ctx.artifact("samples.jsonl", jsonl(outcome.rows))
    csv_key = ctx.artifact("samples.csv", csv_table(outcome.rows, labels))
    ctx.log(f"scored {len(outcome.rows)} samples ({outcome.skipped} rows could not be used)")
    return {
        "suite": spec.suite,
        "models": [{"id": m.id, "name": m.name} for m in models],
        "metrics": outcome.metrics,
        "difference": outcome.difference,
        "details": outcome.details,
        "count": len(outcome.rows),
        "skipped": outcome.skipped,
        "samples_key": samples_key,
        "csv_key": csv_key,
    }
