"""What one forward pass sees: the token lengths of a dataset (`Lengths`, from its statistics)
and the micro-batches a run makes of them (`micro_batches`), as the trainer's recipe batches
them (packed or padded, loss on the answers or on everything).

Memory is sized for a bad micro-batch, not an average one: the longest example (cut at
`max_length`) plus `batch_size - 1` examples at the 90th percentile; without packing, every row
padded to the longest. Without statistics every example is taken to be `max_length` long.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from tuneforge.training.recipe import Batching
from tuneforge.training.registry import recipe_for
from tuneforge.training.spec import TrainingBase


class Lengths(BaseModel):
    """The token lengths the estimate needs, from a dataset's statistics."""

    mean: float = Field(description="Mean example length (prompt + answer).")
    answer_mean: float = Field(description="Mean answer length.")
    p50: int = Field(description="Median example length.")
    p90: int = Field(description="90th percentile example length.")
    p95: int = Field(description="95th percentile example length.")
    max: int = Field(description="The longest example.")
    histogram: list[tuple[int, int, int]] = Field(
        default_factory=list, description="(start, end, count) bins of example lengths."
    )

    def truncated_mean(self, max_length: int) -> float:
        """Mean length once examples are cut at `max_length`."""
        if max_length >= self.max or not self.histogram:
            return min(self.mean, float(max_length))
        rows = sum(count for _, _, count in self.histogram) or 1
        cut = sum(
            count * min((start + end) / 2, max_length) for start, end, count in self.histogram
        )
        return min(self.mean, cut / rows)


def dataset_lengths(stats: Any) -> Lengths | None:
    """`Lengths` from `DatasetStats`, its JSON dump (a dataset row's `.stats`), or None."""
    if stats is None:
        return None
    data = stats.model_dump() if isinstance(stats, BaseModel) else dict(stats)
    total, answer = data.get("total_tokens") or {}, data.get("answer_tokens") or {}
    if not total.get("count"):
        return None
    return Lengths(
        mean=float(total["mean"]),
        answer_mean=float(answer.get("mean", total["mean"] / 2)),
        p50=int(total["p50"]),
        p90=int(total["p90"]),
        p95=int(total["p95"]),
        max=int(total["max"]),
        histogram=[(h["start"], h["end"], h["count"]) for h in total.get("histogram") or []],
    )


class MicroBatch(BaseModel):
    """The tokens one forward pass sees."""

    tokens: int = Field(description="Tokens in the micro-batch.")
    loss_tokens: int = Field(description="Tokens that carry loss (where the head runs).")
    rows: int = Field(description="Rows of the input (1 when packed).")
    row_tokens: int = Field(description="Tokens per row (the attention mask's side).")
    masked: bool = Field(
        description="Attention needs a mask: several examples share a packed row, or rows are "
        "padded (one example alone needs none)."
    )


def _loss_fraction(batching: Batching, lengths: Lengths | None) -> float:
    if not batching.answers_only:
        return 1.0
    if lengths is None or lengths.mean <= 0:
        return 0.5
    return min(1.0, lengths.answer_mean / lengths.mean)


def micro_batches(spec: TrainingBase, lengths: Lengths | None) -> tuple[MicroBatch, MicroBatch]:
    """(a typical micro-batch for speed, a bad one for peak memory), batched as the spec's
    recipe batches: each example brings the recipe's `sequences` (a preference pair two, both
    held for one backward pass)."""
    batching = recipe_for(spec).batching(spec)
    size, limit = math.ceil(spec.batch_size * batching.sequences), spec.max_length
    packed = batching.packed
    fraction = _loss_fraction(batching, lengths)
    if lengths is None:
        mean = longest = p90 = float(limit)
    else:
        mean = lengths.truncated_mean(limit)
        longest, p90 = float(min(lengths.max, limit)), float(min(lengths.p90, limit))

    def batch(tokens: float, row: float) -> MicroBatch:
        return MicroBatch(
            tokens=max(1, math.ceil(tokens)),
            loss_tokens=max(1, math.ceil(tokens * fraction)),
            rows=1 if packed else size,
            row_tokens=max(1, math.ceil(row)),
            masked=size > 1,
        )

    if packed:
        worst = min(size * limit, longest + (size - 1) * max(p90, mean))
        return batch(size * mean, size * mean), batch(worst, worst)
    return batch(size * mean, max(p90, mean)), batch(size * longest, longest)
