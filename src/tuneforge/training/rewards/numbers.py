"""The numbers in a completion, as the numeric grader reads them: `1,234.5`, `-3`, `1e3`, `3/4`
and `50%` (as 50); a number glued to letters (`H2O`, `x2`) is not one. And the text inside a
tag such as `<answer>...</answer>`, found without a regular expression that could backtrack."""

from __future__ import annotations

import math
import re
from typing import Any

_NUMBER = re.compile(
    r"(?:(?<![\w.)])(?P<sign>[-+\u2212]))?(?<![\w.])"
    r"(?:(?P<numerator>\d+)/(?P<denominator>\d+)(?![\d.])"  # a fraction: 3/4
    r"|(?P<grouped>\d{1,3}(?:,\d{3})+(?:\.\d+)?)(?!\d)"  # thousands separators: 1,234.5
    r"|(?P<plain>(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?))"  # 42, 3.14, .5, 1e3
)


def _value(found: re.Match[str]) -> float | None:
    sign = -1.0 if found["sign"] in ("-", "\u2212") else 1.0
    if found["numerator"] is not None:
        denominator = int(found["denominator"])
        return None if denominator == 0 else sign * int(found["numerator"]) / denominator
    return sign * float((found["grouped"] or found["plain"]).replace(",", ""))


def last_number(text: str) -> float | None:
    """The value of the last number in `text`, or None when it has none."""
    for found in reversed(list(_NUMBER.finditer(text))):
        value = _value(found)
        if value is not None and math.isfinite(value):  # 1e999 is no number to compare
            return value
    return None


def tagged(text: str, tag: str) -> str | None:
    """What the last `<tag>...</tag>` in `text` holds (the tag's name in any case), or None
    when there is no such pair."""
    lowered = text.lower()
    opening, closing = f"<{tag.lower()}>", f"</{tag.lower()}>"
    end = lowered.rfind(closing)
    start = lowered.rfind(opening, 0, end) if end >= 0 else -1
    return text[start + len(opening) : end] if start >= 0 else None


def reference_number(value: Any) -> float | None:
    """A row's reference as a number: a number as it is, a text by its last number (a worked
    solution ending in `#### 72` counts as 72); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return last_number(value)
    return None


def shown(value: float) -> str:
    """A number as a grade's reason shows it: `42`, `0.75`, `1.5e+20`."""
    return f"{value:.10g}"
