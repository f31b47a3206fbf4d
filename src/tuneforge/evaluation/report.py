"""An evaluation's per-sample rows as files (JSON Lines, CSV) and the filters that browse them.

A row is `{"index", "prompt", "messages", "images", "reference", "answers", "scores"}`:
`images` holds a thumbnail (a JPEG `data:` URL) of each image the models were shown; `answers`
and `scores` map each model's label (`A`, then `B` when two models were compared) to its answer
and to its per-sample scores (`metrics.SuiteResult.per_sample`, or the perplexity suite's `nll`,
`perplexity` and `tokens`). Nothing here imports torch: the web process reads these files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

LABELS = ("A", "B")
SampleFilter: TypeAlias = Literal[
    "a_right_b_wrong", "a_wrong_b_right", "both_right", "both_wrong", "a_right", "a_wrong"
]
FILTERS: dict[str, tuple[bool, bool | None]] = {
    "a_right_b_wrong": (True, False),
    "a_wrong_b_right": (False, True),
    "both_right": (True, True),
    "both_wrong": (False, False),
    "a_right": (True, None),
    "a_wrong": (False, None),
}
"""Each filter: whether model A's answer must be right, and B's (None: B does not matter)."""
RIGHT_SCORE = 0.5


def is_right(scores: Mapping[str, float | bool]) -> bool | None:
    """Whether an answer counts as right: its `correct` flag where the suite has one
    (classification, extraction, json), else whether its `score` is at least 0.5 (ROUGE-L,
    chrF); None when it has neither (the vibe and perplexity suites)."""
    if "correct" in scores:
        return bool(scores["correct"])
    if "score" in scores:
        return float(scores["score"]) >= RIGHT_SCORE
    return None


def matches(row: Mapping[str, Any], which: SampleFilter) -> bool:
    """Whether `row` passes the filter `which` (see `FILTERS`)."""
    a, b = FILTERS[which]
    scores = row["scores"]
    if is_right(scores.get("A", {})) is not a:
        return False
    return b is None or is_right(scores.get("B", {})) is b


def right_answers(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[int] | None:
    """How many answers of each model (by label) count as right (`is_right`); None when the
    suite has no right or wrong (vibe, perplexity)."""
    verdicts = [[is_right(row["scores"].get(label, {})) for row in rows] for label in labels]
    if not rows or any(v is None for answers in verdicts for v in answers):
        return None
    return [sum(bool(v) for v in answers) for answers in verdicts]


def needs_two_models(which: SampleFilter) -> bool:
    return FILTERS[which][1] is not None


def difference(metrics: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    """B - A for every metric both models have; None unless there are two with metrics."""
    if len(metrics) != 2 or not metrics[0]:
        return None
    a, b = metrics
    return {name: b[name] - a[name] for name in a if name in b}


def jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def _score_keys(rows: Sequence[Mapping[str, Any]], label: str) -> list[str]:
    """Every per-sample score name of model `label`, in the order they first appear."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row["scores"].get(label, {})))
    return list(keys)


# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value  # a model's answer is text to read, never a formula to run
    return "" if value is None else value


def csv_table(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> bytes:
    """One line per sample: index, prompt, (when any sample shows images) how many it shows,
    reference, then for each model (suffix `_a`, `_b`) its answer (unless the suite generates
    none) and each of its per-sample scores."""
    answered = any(row["answers"] for row in rows)
    pictured = any(row.get("images") for row in rows)
    columns: list[tuple[str, str, str | None]] = []  # (header, label, score key or None)
    for label in labels:
        suffix = label.lower()
        if answered:
            columns.append((f"answer_{suffix}", label, None))
        columns += [(f"{key}_{suffix}", label, key) for key in _score_keys(rows, label)]
    out = io.StringIO()
    writer = csv.writer(out)
    images = ["images"] if pictured else []
    writer.writerow(
        ["index", "prompt", *images, "reference", *(header for header, _, _ in columns)]
    )
    for row in rows:
        cells = [
            row["answers"].get(label) if key is None else row["scores"].get(label, {}).get(key)
            for _, label, key in columns
        ]
        shown = [len(row.get("images") or [])] if pictured else []
        values = (row["index"], row["prompt"], *shown, row["reference"], *cells)
        writer.writerow([_cell(v) for v in values])
    return out.getvalue().encode()
