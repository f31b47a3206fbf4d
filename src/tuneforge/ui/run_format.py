"""How training numbers read on screen: metrics, counts, spans of time, settings."""

from __future__ import annotations

import math
from typing import Any

#: Metric names as people say them.
METRIC_NAMES = {
    "loss": "Training loss",
    "eval_loss": "Eval loss",
    "perplexity": "Perplexity",
    "token_accuracy": "Token accuracy",
    "learning_rate": "Learning rate",
    "grad_norm": "Gradient norm",
    "tokens_per_second": "Tokens/s",
    "epoch": "Epoch",
    "eta_seconds": "Time left",
    "update_ratio": "Update size",
    "rewards/chosen": "Chosen reward",
    "rewards/rejected": "Rejected reward",
    "rewards/margin": "Reward margin",
    "rewards/accuracy": "Preference accuracy",
    "nll_loss": "NLL loss",
    "log_odds_ratio": "Log odds ratio",
    "kl": "KL",
    "reward": "Mean reward",
    "reward_std": "Reward spread",
    "completion_length": "Completion length",
    "clip_ratio": "Clipped share",
}
#: Metrics that are shares, shown as percentages.
PERCENTAGES = frozenset({"token_accuracy", "rewards/accuracy", "clip_ratio"})
EVAL = "eval_"
GRADER = "reward/"


def metric_name(name: str) -> str:
    """`eval_rewards/accuracy` → "Eval preference accuracy", `reward/format` → "Reward: format"."""
    if name in METRIC_NAMES:
        return METRIC_NAMES[name]
    if name.startswith(EVAL):
        inner = metric_name(name.removeprefix(EVAL))
        return f"Eval {inner[:1].lower()}{inner[1:]}"
    if name.startswith(GRADER):
        grader = name.removeprefix(GRADER)
        return f"Reward spread: {grader[:-4]}" if grader.endswith("/std") else f"Reward: {grader}"
    return name.replace("_", " ").capitalize()


def metric(name: str, value: float | None) -> str:
    """A metric's value: shares as a percentage, rates rounded, small numbers significant."""
    if value is None or not math.isfinite(value):
        return "—"
    if name.removeprefix(EVAL) in PERCENTAGES:
        return f"{value:.1%}"
    if name == "tokens_per_second":
        return f"{value:,.0f}"
    if name == "eta_seconds":
        return span(value)
    if name == "learning_rate":
        return f"{value:.2e}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def count(n: float) -> str:
    """A large count for people: 1,234 · 12.3 K · 4.5 M · 2.7 B."""
    for suffix, scale, start in (("B", 1e9, 1e9), ("M", 1e6, 1e6), ("K", 1e3, 1e4)):
        if n >= start:
            return f"{n / scale:,.1f} {suffix}"
    return f"{n:,.0f}"


def span(seconds: float) -> str:
    """A duration, coarse: "45 s", "3 min 20 s", "2 h 05 min"."""
    total = max(round(seconds), 0)
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def took(seconds: float | None, estimated: float | None) -> str:
    """How long a run took, beside what it was estimated to take when it started."""
    if seconds is None:
        return "—"
    if estimated is None:
        return f"took {span(seconds)}"
    return f"estimated {span(estimated)}, took {span(seconds)}"


def setting(value: Any) -> str:
    """A spec value in a table cell."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_item(item) for item in value) or "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _item(item: Any) -> str:
    """An item of a listed setting: a grader by its name, type and weight."""
    if isinstance(item, dict) and "type" in item:
        weight = item.get("weight", 1.0)
        return f"{item.get('name') or item['type']} ({item['type']}, weight {weight:g})"
    return str(item)
