"""What every suite takes and returns: the `SuiteResult`, the `Reference` type, and the checks
of the inputs that every suite runs first (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

Reference: TypeAlias = str | Sequence[str]
"""One expected output, or several acceptable ones (the best match counts)."""


@dataclass(frozen=True)
class SuiteResult:
    """What a suite function returns; see the package docstring for the three parts."""

    metrics: dict[str, float]
    per_sample: Sequence[Mapping[str, float | bool | str]]  # str: a reason (rewards suite)
    details: dict[str, Any] = field(default_factory=dict)


def check_pairs(predictions: Sequence[str], references: Sequence[Any]) -> None:
    """Refuse predictions and references that are not two equally long, non-empty lists, or
    a prediction that is not a string."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be lists of strings, not one string")
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references: "
            "they must pair up one to one"
        )
    if not predictions:
        raise ValueError("nothing to score: predictions and references are empty")
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise TypeError(f"prediction {index} is {type(prediction).__name__}, not a string")


def single_references(references: Sequence[Any]) -> list[str]:
    """The references of a suite that takes one per sample, each checked to be a string."""
    for index, reference in enumerate(references):
        if not isinstance(reference, str):
            raise TypeError(f"reference {index} is {type(reference).__name__}, not a string")
    return list(references)


def reference_lists(references: Sequence[Reference]) -> list[list[str]]:
    """Every sample's acceptable answers as a non-empty list of strings."""
    lists: list[list[str]] = []
    for index, reference in enumerate(references):
        answers = [reference] if isinstance(reference, str) else list(reference)
        if not answers:
            raise ValueError(f"reference {index} is an empty list: give at least one answer")
        if not all(isinstance(answer, str) for answer in answers):
            raise TypeError(f"reference {index} must be a string or a list of strings")
        lists.append(answers)
    return lists


def mean(values: Sequence[float]) -> float:
    """The mean of a suite's per-sample values (never empty: `check_pairs` saw to it)."""
    return sum(values) / len(values)
