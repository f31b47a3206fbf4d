"""Train/test splits: the source's own, a seeded manual split (optionally stratified), or none."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tuneforge.errors import InvalidInput
from tuneforge.strict_numbers import Integer, Number, OptionalInteger


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["source", "manual", "none"] = Field(
        default="manual",
        description=(
            "`source`: keep the splits the data came with; `manual`: hold out a test split here; "
            "`none`: everything is training data."
        ),
    )
    test_size: Number = Field(
        default=0.1,
        gt=0,
        description=("The test split's size: a fraction below 1 (0.1 = 10%) or a number of rows."),
    )
    sample_size: OptionalInteger = Field(
        default=None,
        ge=1,
        description=(
            "Use only this many rows (a seeded random sample), e.g. for a quick first run."
        ),
    )
    seed: Integer = Field(
        default=42, description="Seed for shuffling and sampling: same seed, same split."
    )
    stratify_by: str | None = Field(
        default=None, description=("Keep this label column's proportions equal in both splits.")
    )

    @model_validator(mode="after")
    def _whole_counts(self) -> SplitSpec:
        if self.test_size >= 1 and not float(self.test_size).is_integer():
            raise ValueError("test_size is a fraction below 1 or a whole number of rows")
        return self


def _test_count(size: float, total: int) -> int:
    count = round(size * total) if size < 1 else int(size)
    return min(max(count, 1 if total > 1 else 0), total - 1) if total else 0


def split_indices(
    spec: SplitSpec,
    count: int,
    labels: Sequence[object] | None = None,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, list[int]]:
    """Row indices per split for a manual split (or `train` only for `none`), reproducibly.
    Rows with equal `groups` keys (repeats of one example) land in the same split, so that no
    example is both trained on and tested."""
    rng = random.Random(spec.seed)  # noqa: S311 (reproducible shuffling, not secrets)
    indices = list(range(count))
    if spec.sample_size is not None and spec.sample_size < count:
        indices = sorted(rng.sample(indices, spec.sample_size))
    if spec.mode == "none":
        return {"train": indices}
    if spec.mode == "source":
        raise ValueError("source splits are taken as they are")
    test_total = _test_count(spec.test_size, len(indices))
    if spec.stratify_by is None:
        train, test = _hold_out(indices, test_total, rng, groups)
        return {"train": sorted(train), "test": sorted(test)}
    if labels is None:
        raise InvalidInput(f"Cannot stratify: there is no column {spec.stratify_by!r}.")
    strata: dict[object, list[int]] = defaultdict(list)
    for index in indices:
        strata[labels[index]].append(index)
    train, test = [], []
    share = test_total / len(indices) if indices else 0
    for key in sorted(strata, key=str):
        members = strata[key]
        kept, held = _hold_out(members, round(len(members) * share), rng, groups)
        test += held
        train += kept
    return {"train": sorted(train), "test": sorted(test)}


def _hold_out(
    indices: list[int], count: int, rng: random.Random, groups: Sequence[Hashable] | None
) -> tuple[list[int], list[int]]:
    """Shuffle `indices` and hold `count` of them out for testing: (train, test). The rows of a
    group go together, in the shuffled order of their first row; a group that would overfill the
    test split trains, so the test split has exactly `count` rows while single rows can fill it."""
    rng.shuffle(indices)
    if groups is None:
        return indices[count:], indices[:count]
    together: dict[Hashable, list[int]] = defaultdict(list)
    for index in indices:
        together[groups[index]].append(index)
    train: list[int] = []
    test: list[int] = []
    for members in together.values():
        (test if len(test) + len(members) <= count else train).extend(members)
    return train, test
