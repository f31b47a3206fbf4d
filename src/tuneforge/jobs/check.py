"""The evaluation that fits a fine-tuned model, and its automatic before/after check.

When a training run has recorded its model, the train worker queues the check (through
`create_job`, as an `evaluate` job marked `automatic`): the fine-tune (A) and its base (B)
answer a handful of the dataset's test examples, greedy, scored by the suite that fits the data.
The Evaluate button of the model page prefills its form with the same evaluation, all samples
instead of a handful, so a full evaluation of the same examples gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy.orm import Session

from tuneforge.db.tables import Dataset, Job, Model, User
from tuneforge.evaluation.fitting import answer_budget, fitting_suite
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.jobs.kinds.evaluate import EvaluateKind
from tuneforge.jobs.lifecycle import create_job
from tuneforge.settings import Settings

DEFAULT_SAMPLES = EvaluationSpec.model_fields["max_samples"].default


def fitting_evaluation(
    model: Model,
    dataset: Dataset,
    split: Literal["test", "train"],
    records: Sequence[Mapping[str, Any]],
    *,
    max_samples: int = DEFAULT_SAMPLES,
    automatic: bool = False,
) -> EvaluationSpec:
    """The fine-tune against its base on `split` of `dataset` (whose first rows are
    `records`), greedy, with the suite and answer length that fit the data; a model trained
    with reward graders (GRPO) is scored by its own graders, its answers as long as in its
    run."""
    run = model.spec or {}
    graders = run.get("graders")
    return EvaluationSpec(
        model=model.id,
        compare_with=model.base_model,
        dataset_id=dataset.id,
        split=split,
        suite="rewards" if graders else fitting_suite(records),
        graders=graders or None,
        max_samples=max_samples,
        max_new_tokens=run.get("max_completion_length") or answer_budget(dataset.stats),
        temperature=0.0,
        automatic=automatic,
    )


def queue_check(
    session: Session,
    user: User,
    settings: Settings,
    model: Model,
    dataset: Dataset,
    test: Sequence[Mapping[str, Any]],
    examples: int,
) -> Job | None:
    """Queue the before/after check of `model` on `examples` rows of the test split `test`;
    None when there is nothing to check on (no test split) or the run asked for none. Raises
    the evaluate kind's refusal (a `DomainError`) when the check cannot run here."""
    if examples <= 0 or not test:
        return None
    spec = fitting_evaluation(model, dataset, "test", test, max_samples=examples, automatic=True)
    return create_job(session, user, settings, EvaluateKind.name, spec)
