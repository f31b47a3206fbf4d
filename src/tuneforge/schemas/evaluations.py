"""Evaluation contracts: the results of an `evaluate` job and its samples. The spec that
launches one is `tuneforge.evaluation.spec.EvaluationSpec` (`POST /jobs`, kind `evaluate`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tuneforge.jobs.kinds.evaluate import EvaluationScores

Score = bool | int | float | str


class ComparisonPublic(BaseModel):
    label: str = Field(
        description="What the difference is: `fine-tune vs base` when one model is a fine-tune "
        "of the other, `fine-tune vs <name>` against another catalog model, else `B vs A`."
    )
    first: int = Field(description="The index in `models` of the model it is counted from.")
    values: dict[str, float] = Field(
        description="Each metric of that model minus the other's: with a fine-tune, positive "
        "when the fine-tune scores higher, whichever of A and B it is."
    )


class EvaluationPublic(EvaluationScores):
    job_id: str = Field(description="The evaluation (its job id).")
    dataset_id: str = Field(description="The processed dataset the samples came from.")
    split: str = Field(description="The dataset split the samples came from.")
    automatic: bool = Field(
        description="Whether TuneForge ran it as a training run's before/after check."
    )
    comparison: ComparisonPublic | None = Field(
        description="The difference of two models as the pages show it; null for one model."
    )


class SamplePublic(BaseModel):
    index: int = Field(description="The row's position in its split.")
    prompt: str = Field(description="The last user turn of what the models were asked.")
    messages: list[dict[str, str]] = Field(
        description="Everything the models were asked, as `{role, text}` turns."
    )
    images: list[str] = Field(
        default_factory=list,
        description="A thumbnail (a small JPEG `data:` URL) of each image the models were "
        "shown with the prompt, in order; empty for a text-only sample.",
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
