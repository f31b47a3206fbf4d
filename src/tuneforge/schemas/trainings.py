"""Training run contracts: metrics, comparisons, estimates, recommendations, presets."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tuneforge.models.availability import Availability
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.estimate import Estimate
from tuneforge.training.recommend import Recommendation


class SamplesAtStep(BaseModel):
    step: int = Field(description="The step the answers were generated at.")
    items: list[dict[str, str]] = Field(
        description="Each prompt with the model's `answer` (and the test split's `reference`)."
    )


class RunMetrics(BaseModel):
    job_id: str = Field(description="The training run.")
    series: dict[str, list[tuple[int, float]]] = Field(
        description="Each metric as `[step, value]` points: loss, learning_rate, grad_norm, "
        "tokens_per_second, epoch, eta_seconds, eval_loss, perplexity, token_accuracy, system/*."
    )
    samples: list[SamplesAtStep] = Field(description="Sample generations at each evaluation.")


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


class EstimatePublic(BaseModel):
    estimate: Estimate = Field(description="Memory and duration on this machine.")
    recommendations: list[Recommendation] = Field(
        description="Suggested settings for this dataset, model and machine, with reasons."
    )


class CatalogModelPublic(CatalogEntry):
    """A catalog model, with whether it can run on this server."""

    availability: Availability = Field(
        description="`available`, `downloadable` (with its size) or `unavailable` (with why): a "
        "run or a chat of an unavailable model is refused."
    )
