"""The rewards suite: the graders of a GRPO run score each model's answers, so the reward a
fine-tune learned to earn is measured against its base on prompts it never trained on.

Each answer is graded with its dataset row (a prompt-only row's reference columns, such as
`answer` or `schema`); in a conversation dataset, the column `answer` holds the conversation's
last answer, as GRPO gives it to the same graders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneforge.evaluation.metrics.contract import SuiteResult, mean
from tuneforge.evaluation.samples import Sample
from tuneforge.training.rewards.grade import GraderSet
from tuneforge.training.rewards.spec import ANSWER_COLUMN


def grader_row(sample: Sample) -> dict[str, Any]:
    """What the graders read for `sample`: its row, with a conversation's last answer as the
    column `answer`."""
    if "messages" in sample.record and sample.reference is not None:
        return {**sample.record, ANSWER_COLUMN: sample.reference}
    return dict(sample.record)


def rewards(graders: GraderSet, answers: Sequence[str], samples: Sequence[Sample]) -> SuiteResult:
    """The graders' scores of `answers` (one per sample).

    metrics: `reward` (the mean weighted total, as GRPO's `eval_reward`: 0 to the sum of the
    weights) and `reward/<grader>` (each grader's mean score, 0..1).
    per_sample: `reward`, `reward/<grader>`, `reason/<grader>` (why it scored so) and `score`
    (the total as a share of the highest possible, 0..1).
    details: `graders` (their names) and `max_reward` (the sum of their weights).
    """
    if len(answers) != len(samples) or not answers:
        raise ValueError(f"{len(answers)} answers for {len(samples)} samples")
    most = sum(spec.weight for spec in graders.specs)
    per_sample: list[dict[str, float | bool | str]] = []
    for scores in graders.score(answers, [grader_row(sample) for sample in samples]):
        sample: dict[str, float | bool | str] = {
            "reward": scores.total,
            "score": scores.total / most if most else 0.0,
        }
        for name, value in scores.grades.items():
            sample[f"reward/{name}"] = value
            sample[f"reason/{name}"] = scores.reasons[name]
        per_sample.append(sample)
    names = [spec.name for spec in graders.specs]
    metrics = {"reward": mean([float(s["reward"]) for s in per_sample])}
    for name in names:
        metrics[f"reward/{name}"] = mean([float(s[f"reward/{name}"]) for s in per_sample])
    return SuiteResult(metrics, per_sample, {"graders": names, "max_reward": most})
