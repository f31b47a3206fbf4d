"""The `evaluate` job: one or two models answer samples of a processed dataset's split, scored
by a suite (the rewards suite's graders may call judges too) and, when the spec has a judge,
graded by a model behind an OpenAI-compatible API.
The per-sample rows go to the artifact store under the job's prefix as `samples.jsonl` and
`samples.csv`; the metrics table is the job's result."""

from __future__ import annotations

import dataclasses
from typing import Any

from tuneforge.data.stored import dataset_prefix, processed_records
from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.evaluation.judge import Judge, JudgeFailed, JudgeSpec, judge_rows
from tuneforge.evaluation.report import LABELS, csv_table, difference, jsonl, right_answers
from tuneforge.evaluation.run import Outcome, run_evaluation
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.endpoints import check_judges
from tuneforge.jobs.inputs import ChatModel
from tuneforge.jobs.kinds.evaluate import (
    EvaluatedModel,
    EvaluateResult,
    evaluation_dataset,
    evaluation_models,
)

PROGRESS_REPORTS = 50  # progress events per model, at most (a cancel is checked every sample)
ANSWERING_SHARE = 0.5  # of the progress bar, when a judge grades the answers afterwards


def _inputs(
    ctx: JobContext, spec: EvaluationSpec
) -> tuple[list[dict[str, Any]], list[ChatModel], dict[str, str]]:
    """The split's rows, the models and the judges' API keys by secret name, checked again as
    the owner (any may have gone)."""
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The evaluation's owner no longer exists.")
        dataset = evaluation_dataset(session, owner, spec)
        models = evaluation_models(session, owner, ctx.settings, spec)
        judges = spec.judges()
        check_judges(judges, owner, ctx.settings)  # an address may have changed since the launch
        names = {judge.api_key_secret for judge in judges if judge.api_key_secret}
        keys = secret_values(session, ctx.settings, owner.id, names)
        if gone := sorted(names - keys.keys()):
            raise InvalidInput(f"The judge's key secret {gone[0]} was deleted; set it again.")
        session.expunge(dataset)
    prefix = dataset_prefix(dataset.owner_id, dataset.id)
    return processed_records(ctx.store, prefix, dataset.splits, spec.split), models, keys


def _judged(spec: JudgeSpec, ctx: JobContext, outcome: Outcome, api_key: str | None) -> Outcome:
    """The outcome with the judge's grades of every answer added to its rows and metrics."""
    labels = LABELS[: len(outcome.metrics)]

    def on_answer(total: int, done: int) -> None:
        ctx.check_cancelled()
        if done % max(1, total // PROGRESS_REPORTS) == 0 or done == total:
            fraction = ANSWERING_SHARE + (1 - ANSWERING_SHARE) * done / max(total, 1)
            ctx.progress(fraction, f"judging with {spec.model}: {done}/{total}")

    ctx.log(f"judging the answers with {spec.model} at {spec.base_url}")
    judge = Judge(spec, api_key)
    try:
        means = judge_rows(judge, outcome.rows, labels, on_answer)
    finally:
        judge.close()
    metrics = [
        {**values, **({"judge_score": means[label]} if label in means else {})}
        for label, values in zip(labels, outcome.metrics, strict=True)
    ]
    return dataclasses.replace(outcome, metrics=metrics, difference=difference(metrics))


def run(spec: EvaluationSpec, ctx: JobContext) -> EvaluateResult:
    records, models, keys = _inputs(ctx, spec)
    share = 1.0 if spec.judge is None else ANSWERING_SHARE

    def on_sample(label: str, total: int, done: int) -> None:
        ctx.check_cancelled()
        if done % max(1, total // PROGRESS_REPORTS) == 0 or done == total:
            fraction = (LABELS.index(label) * total + done) / (len(models) * total)
            ctx.progress(share * fraction, f"model {label}: {done}/{total}")

    ctx.log(f"evaluating {' and '.join(m.name for m in models)} ({spec.suite})")
    outcome = run_evaluation(
        spec,
        [m.ref for m in models],
        records,
        ctx.settings,
        on_sample,
        ctx.cancel_event,
        keys,
        names=[m.name for m in models],
    )
    ctx.log(f"answers made by {outcome.engine}. {outcome.engine_note or ''}".strip())
    judge_error = None
    if spec.judge is not None:
        try:
            key = keys.get(spec.judge.api_key_secret or "")
            outcome = _judged(spec.judge, ctx, outcome, key)
        except JudgeFailed as exc:  # the answers took long to make: keep them, ungraded
            judge_error = exc.message
            ctx.log(
                f"{exc.message} The results are kept without the judge's grades.", level="error"
            )
    labels = LABELS[: len(models)]
    samples_key = ctx.artifact("samples.jsonl", jsonl(outcome.rows))
    csv_key = ctx.artifact("samples.csv", csv_table(outcome.rows, labels))
    ctx.log(f"scored {len(outcome.rows)} samples ({outcome.skipped} rows could not be used)")
    return EvaluateResult(
        suite=spec.suite,
        models=[
            EvaluatedModel(id=m.id, name=m.name, base=m.base if m.fine_tuned else None)
            for m in models
        ],
        metrics=outcome.metrics,
        difference=outcome.difference,
        right=right_answers(outcome.rows, labels),
        details=outcome.details,
        count=len(outcome.rows),
        skipped=outcome.skipped,
        samples_key=samples_key,
        csv_key=csv_key,
        judge_error=judge_error,
        engine=outcome.engine,
        engine_note=outcome.engine_note,
    )
