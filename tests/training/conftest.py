"""A tiny random Gemma 3 (real tokenizer) and a memorisable conversation set for recipe tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.conversation import message


@dataclass
class Recorder:
    """A reporter that keeps everything; `cancel_after` asks to stop after that step."""

    cancel_after: int | None = None
    points: dict[str, dict[int, float]] = field(default_factory=dict)
    sample_sets: list[tuple[int, list[dict[str, str]]]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    last_step: int = 0

    def progress(self, fraction: float, message: str | None = None) -> None:
        pass

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.last_step = max(self.last_step, step)
        for name, value in values.items():
            self.points.setdefault(name, {})[step] = value

    def samples(self, step: int, items: list[dict[str, str]]) -> None:
        self.sample_sets.append((step, items))

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append(message)

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_after is not None and self.last_step >= self.cancel_after

    def series(self, name: str) -> list[float]:
        return [value for _, value in sorted(self.points[name].items())]


def conversations(count: int = 8) -> list[dict[str, Any]]:
    """Short question/answer pairs a tiny model can memorise."""
    colours = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "cyan", "rose", "gold"]
    return [
        {
            "messages": [
                message("user", f"Which colour is number {i}?"),
                message("assistant", f"Number {i} is {colours[i % len(colours)]}."),
            ]
        }
        for i in range(count)
    ]


def preferences(count: int = 8) -> list[dict[str, Any]]:
    """Preference pairs: a right answer chosen over an evasive one, which a tiny model learns
    to prefer."""
    colours = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "cyan", "rose", "gold"]
    return [
        {
            "prompt": [message("user", f"Which colour is number {i}?")],
            "chosen": [message("assistant", f"Number {i} is {colours[i % len(colours)]}.")],
            "rejected": [message("assistant", "I would rather not say.")],
        }
        for i in range(count)
    ]


def feedback(count: int = 8) -> list[dict[str, Any]]:
    """Unpaired feedback: each prompt's answer, desirable when right (every other one)."""
    return [
        {"prompt": pair["prompt"], "completion": pair[side], "label": side == "chosen"}
        for index, pair in enumerate(preferences(count))
        for side in (("chosen",) if index % 2 == 0 else ("rejected",))
    ]
