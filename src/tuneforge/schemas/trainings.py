"""Training run contracts: metrics, comparisons, estimates, recommendations, presets."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from tuneforge.models.availability import Availability
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.estimate import Estimate
from tuneforge.training.recommend import Recommendation


class SamplesAtStep(BaseModel):
    step: int = Field(description="The step the answers were generated at.")
    items: list[dict[str, Any]] = Field(
        description="Each prompt with the model's `answer`, the test split's `reference` (or "
        "null) and whether the answer `ended` at an end of turn (false: it hit the token limit)."
    )


class HealthFlag(BaseModel):
    code: str = Field(
        description="What looks wrong: loss_not_finite, loss_exploding, loss_rising, grad_zero, "
        "grad_exploding, updates_exploding, eval_flat, eval_rising, answers_empty, "
        "answers_identical, answers_never_end, no_chat_template."
    )
    level: str = Field(description="`error` (the run is broken) or `warning`.")
    title: str = Field(description="A few words.")
    detail: str = Field(description="What was seen, with the numbers.")
    advice: str = Field(description="What to change.")
    step: int | None = Field(description="Where it was seen.")


class RunMetrics(BaseModel):
    job_id: str = Field(description="The training run.")
    series: dict[str, list[tuple[int, float]]] = Field(
        description="Each metric as `[step, value]` points: loss, learning_rate, grad_norm, "
        "tokens_per_second, epoch, eta_seconds, eval_loss, perplexity, token_accuracy, system/*."
    )
    samples: list[SamplesAtStep] = Field(description="Sample generations at each evaluation.")
    health: list[HealthFlag] = Field(
        default_factory=list,
        description="What looks wrong with the run so far, each with what to change (errors "
        "first; empty when it looks healthy).",
    )


class RunSummary(BaseModel):
    job_id: str = Field(description="The training run.")
    name: str | None = Field(description="The run's name (or its model).")
    status: str = Field(description="The run's status.")
    spec: dict[str, Any] = Field(description="The run's settings.")
    result: dict[str, Any] | None = Field(description="What the run produced, once finished.")
    series: dict[str, list[tuple[int, float]]] = Field(description="Its metric series.")


class Comparison(BaseModel):
    runs: list[RunSummary] = Field(description="The runs, in the order asked.")
    differences: dict[str, list[Any]] = Field(
        description="Each setting whose value differs between the runs, with every run's value."
    )


class SettingCheck(BaseModel):
    fields: list[str] = Field(description="The settings to change.")
    message: str = Field(description="What is wrong, why, and what to change.")
    severity: Literal["warning", "refusal"] = Field(
        description="`warning`: allowed but almost surely wrong; `refusal`: cannot work, and "
        "`POST /jobs` refuses it."
    )


class EstimatePublic(BaseModel):
    estimate: Estimate = Field(description="Memory and duration on this machine.")
    recommendations: list[Recommendation] = Field(
        description="Suggested settings for this dataset, model and machine, with reasons."
    )
    checks: list[SettingCheck] = Field(
        default_factory=list,
        description="Settings that are likely wrong or cannot work with this dataset, as the "
        "Train page shows them.",
    )


class CatalogModelPublic(CatalogEntry):
    """A catalog model, with whether it can run on this server."""

    availability: Availability = Field(
        description="`available`, `downloadable` (with its size) or `unavailable` (with why): a "
        "run or a chat of an unavailable model is refused."
    )
