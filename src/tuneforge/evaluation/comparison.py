"""How the results of two models read: which of them is the fine-tune, each metric's difference
as "fine-tune vs base" (positive when the fine-tune does better, whichever of A and B it is),
and the one-line verdict of a before/after check ("Learned: 11/12 answers now match, base
0/12"). Works on an evaluation's stored result; nothing here loads a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LOWER_IS_BETTER = frozenset({"perplexity", "nll"})
"""Metrics that are not fractions in 0..1, where lower is better."""
NOT_FRACTIONS = LOWER_IS_BETTER | {"reward", "margin", "chosen_logprob", "rejected_logprob"}
"""Metrics that are numbers rather than fractions in 0..1 (shown as such, not as percentages):
the rewards suite's total runs to the sum of its graders' weights, log-probabilities are
negative."""
MAIN_METRIC: dict[str, str] = {
    "classification": "accuracy",
    "extraction": "exact_match",
    "json": "exact_match",
    "conversation": "rougeL",
    "summarisation": "rougeL",
    "translation": "chrf",
    "perplexity": "perplexity",
    "rewards": "reward",
    "preference": "preference_accuracy",
    "tool_calls": "arguments_exact",
}
"""The metric a verdict names, by suite (the first metric when it is missing)."""
METRIC_LABELS: dict[str, str] = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro-F1",
    "exact_match": "Exact match",
    "f1": "Token F1",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "bleu": "BLEU",
    "chrf": "chrF",
    "parse_rate": "Parses as JSON",
    "schema_match_rate": "Matches the schema",
    "embedding_similarity": "Embedding similarity",
    "perplexity": "Perplexity",
    "nll": "Mean NLL",
    "token_accuracy": "Token accuracy",
    "judge_score": "Judge score",
    "reward": "Reward",
    "preference_accuracy": "Preference accuracy",
    "margin": "Margin (log-prob)",
    "chosen_logprob": "Chosen log-prob",
    "rejected_logprob": "Rejected log-prob",
    "tool_name_accuracy": "Right tools",
    "arguments_exact": "Arguments exact",
    "schema_valid": "Arguments match the schema",
    "no_call_when_none": "No call when none is due",
}
"""How the pages name each metric (the API keeps the keys)."""
MATCHING = frozenset({"classification", "extraction", "json", "tool_calls"})
"""Suites whose answers are right or wrong (the others are close to the reference or not)."""
RIGHT_WORDS: dict[str, tuple[str, str]] = {
    "rewards": ("answers", "earn at least half the reward"),
    "preference": ("pairs", "prefer the chosen answer"),
}
"""What a verdict counts, and what counting as right means, where it is not an answer that
matches (`MATCHING`) or is close to the reference."""


@dataclass(frozen=True)
class Comparison:
    """Two models' metrics side by side: `label` names the difference ("fine-tune vs base",
    "fine-tune vs <other>", or "B vs A" when neither or both are fine-tunes); `first` is the
    index (in the result's models) of the one it is counted from; `values` holds, for each
    metric both have, first minus second."""

    label: str
    first: int
    values: dict[str, float]

    @property
    def second(self) -> int:
        return 1 - self.first


def comparison(
    models: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, float]]
) -> Comparison | None:
    """How two evaluated models compare; None unless two models have metrics. A model is a
    fine-tune when its result names a `base` (older results do not: they read "B vs A")."""
    if len(models) != 2 or len(metrics) != 2 or not metrics[0]:
        return None
    tuned = [bool(m.get("base")) for m in models]
    if tuned[0] != tuned[1]:
        first = tuned.index(True)
        other = models[1 - first]
        is_base = models[first]["base"] == other["id"]
        label = "fine-tune vs base" if is_base else f"fine-tune vs {other['name']}"
    else:
        first, label = 1, "B vs A"
    a, b = metrics[first], metrics[1 - first]
    return Comparison(label, first, {name: a[name] - b[name] for name in a if name in b})


def metric_label(name: str) -> str:
    """How the pages name a metric; a grader's mean reward `reward/<name>` reads "Reward:
    <name>"."""
    if name.startswith("reward/"):
        return f"Reward: {name.removeprefix('reward/')}"
    return METRIC_LABELS.get(name, name.replace("_", " ").capitalize())


def delta_text(name: str, value: float) -> str:
    """A difference as people read it: "+33.3 pts" for fractions, "-1.250" for numbers."""
    return f"{value:+.3f}" if name in NOT_FRACTIONS else f"{value * 100:+.1f} pts"


def value_text(name: str, value: float) -> str:
    """A metric's value: a percentage for fractions, a number for the others (`NOT_FRACTIONS`)."""
    return f"{value:.3f}" if name in NOT_FRACTIONS else f"{value:.1%}"


def main_metric(suite: str, metrics: Mapping[str, float]) -> str | None:
    wanted = MAIN_METRIC.get(suite)
    if wanted in metrics:
        return wanted
    return next(iter(metrics), None)


def better(name: str, difference: float) -> int:
    """1 when a difference (first minus second) of metric `name` favours the first, -1 when it
    favours the second, 0 when it is none."""
    if abs(difference) < 1e-12:
        return 0
    favours_first = difference < 0 if name in LOWER_IS_BETTER else difference > 0
    return 1 if favours_first else -1


def verdict(result: Mapping[str, Any]) -> str:
    """The check's outcome in plain words, from an evaluation's result with two models, the
    fine-tune's figures first: "Learned: 11/12 answers now match, base 0/12."."""
    compared = comparison(result["models"], result["metrics"])
    if compared is None:
        return "The answers are side by side: this suite has no right or wrong."
    suite = result["suite"]
    first, second = result["metrics"][compared.first], result["metrics"][compared.second]
    name = main_metric(suite, first)
    assert name is not None  # comparison() saw metrics
    other = "base" if compared.label == "fine-tune vs base" else "the other model"
    right = result.get("right")
    if right and suite != "perplexity":
        mine, theirs, count = right[compared.first], right[compared.second], result["count"]
        sign = (mine > theirs) - (mine < theirs)
        now = "now " if sign > 0 else ""
        close = ("answers", "match" if suite in MATCHING else "are close to the reference")
        noun, what = RIGHT_WORDS.get(suite, close)
        figures = f"{mine}/{count} {noun} {now}{what}, {other} {theirs}/{count}"
    else:
        sign = better(name, compared.values[name])
        mine_text, theirs_text = value_text(name, first[name]), value_text(name, second[name])
        figures = f"{metric_label(name).lower()} {mine_text}, {other} {theirs_text}"
    if sign > 0:
        return f"Learned: {figures}."
    if sign < 0:
        return f"Worse than the {other.removeprefix('the ')}: {figures}."
    return f"No change yet: {figures}."
