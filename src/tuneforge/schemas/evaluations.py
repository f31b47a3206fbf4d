"""Evaluation contracts: the results of an `evaluate` job and its samples. The spec that
launches one is `tuneforge.evaluation.spec.EvaluationSpec` (`POST /jobs`, kind `evaluate`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Score = bool | int | float | str


class EvaluatedModel(BaseModel):
    id: str = Field(description="A catalog id or the id of a fine-tuned model.")
    name: str = Field(description="The model's name.")


class EvaluationPublic(BaseModel):
    job_id: str = Field(description="The evaluation (its job id).")
    suite: str = Field(description="How the answers were scored.")
    dataset_id: str = Field(description="The processed dataset the samples came from.")
    split: str = Field(description="The dataset split the samples came from.")
    models: list[EvaluatedModel] = Field(description="The models: A, then B when compared.")
    metrics: list[dict[str, float]] = Field(
        description="Each model's metrics, in the order of `models` (fractions in 0..1, except "
        "`perplexity` and `nll`); empty for the vibe suite."
    )
    difference: dict[str, float] | None = Field(
        description="B - A for each metric, when two models were evaluated."
    )
    details: list[dict[str, Any]] = Field(
        description="Each model's details: the confusion matrix and per-class precision, "
        "recall, F1 and support (classification), sacrebleu's signatures (translation), ..."
    )
    count: int = Field(description="How many samples were evaluated.")
    skipped: int = Field(
        description="Rows of the split the suite could not use (no prompt or reference, images)."
    )
    judge_error: str | None = Field(
        default=None,
        description="Why the judge could not grade the answers (the metrics and samples are "
        "then kept without its grades); null without a judge or when it graded them.",
    )


class SamplePublic(BaseModel):
    index: int = Field(description="The row's position in its split.")
    prompt: str = Field(description="The last user turn of what the models were asked.")
    messages: list[dict[str, str]] = Field(
        description="Everything the models were asked, as `{role, text}` turns."
    )
    reference: str | None = Field(description="The expected answer (the row's last answer).")
    answers: dict[str, str] = Field(
        description="Each model's answer by label (`A`, `B`); empty for perplexity."
    )
    scores: dict[str, dict[str, Score]] = Field(
        description="Each model's per-sample scores by label: `score` (0..1) and, where an "
        "answer is simply right or wrong, `correct`; perplexity: `nll`, `perplexity`, `tokens`; "
        "with a judge, `judge_score` (0..1) and `judge_reason`."
    )


class SamplesPage(BaseModel):
    items: list[SamplePublic] = Field(description="The samples, in the split's order.")
    total: int = Field(description="How many samples pass the filter.")
