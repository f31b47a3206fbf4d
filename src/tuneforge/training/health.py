"""Did it work? Silent failures of a training run, read from what it reports, each with what to
change: a loss that is not a number or explodes, a gradient that vanishes or explodes, steps
that move the weights by more than their size, an eval loss that stops improving, sample answers
that are all the same, empty or never end, and training inputs without Gemma's chat template.

`update_ratio` (how far a step moved the trained weights, relative to their size) is the surest
sign of a learning rate far too high: on a small model the loss and the clipped gradient can
look calm while every step throws the weights away.

`health_flags()` is pure: the run page calls it on every tick with what it has read so far (so
flags appear while the run goes), the API on the run's stored events.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

#: step -> value, per metric name (as the run page keeps them)
Series = Mapping[str, Mapping[int, float]]
#: step -> the sample answers generated at that step
SampleSets = Mapping[int, Sequence[Mapping[str, Any]]]

#: The start of the warning the train worker logs when the inputs lack Gemma's turn markers.
NO_CHAT_TEMPLATE = "The training inputs do not contain Gemma's chat template"

LOSS_EXPLODES = 3.0  # the loss is this many times its first value
RISING_STEPS = 12  # steps needed to call a loss "rising steadily"
RISING_FACTOR = 1.3  # the last third's mean over the first third's
GRAD_EXPLODES = 1e3  # a gradient norm this large is out of hand whatever it started at
GRAD_JUMP = 20.0  # ... as is one this many times the first steps' median
UPDATE_EXPLODES = 1.0  # one step moved the weights by more than their own size (healthy: ~1e-3)
ZERO_GRAD = 1e-10
ZERO_GRAD_STEPS = 3  # consecutive steps without a gradient
STALLED_EVALUATIONS = 3  # evaluations without a better eval loss
IMPROVEMENT = 0.01  # an eval loss counts as better when it is 1% below the best before


@dataclass(frozen=True)
class Flag:
    """One thing that looks wrong with a run, and what to change."""

    code: str  # stable, for tests and styling: loss_not_finite, grad_exploding, ...
    level: Literal["error", "warning"]
    title: str  # a few words
    detail: str  # what was seen, with the numbers
    advice: str  # what to change
    step: int | None = None  # where it was seen

    def public(self) -> dict[str, Any]:
        return asdict(self)


NAMES = {
    "loss": "The training loss",
    "grad_norm": "The gradient norm",
    "eval_loss": "The eval loss",
}


def _points(series: Series, name: str) -> list[tuple[int, float]]:
    return sorted((series.get(name) or {}).items())


def _rate(learning_rate: float | None) -> str:
    if learning_rate is None or learning_rate <= 0:
        return "Lower the learning rate (ten times smaller is a good next try)"
    return (
        f"Lower the learning rate (now {learning_rate:g}; try {learning_rate / 10:g}, "
        "LoRA usually trains well between 1e-4 and 2e-4)"
    )


def _not_finite(series: Series, learning_rate: float | None) -> Flag | None:
    for name in NAMES:
        for step, value in _points(series, name):
            if not math.isfinite(value):
                return Flag(
                    "loss_not_finite",
                    "error",
                    "The loss is not a number",
                    f"{NAMES[name]} became {value} at step {step}: the weights are broken from "
                    "there on.",
                    f"{_rate(learning_rate)}, keep max grad norm at 1, or train in fp32.",
                    step,
                )
    return None


def _loss_explodes(series: Series, learning_rate: float | None) -> Flag | None:
    points = [(s, v) for s, v in _points(series, "loss") if math.isfinite(v)]
    if len(points) < 3:
        return None
    first = points[0][1]
    recent = statistics.fmean(v for _, v in points[-3:])
    step = points[-1][0]
    if first > 0 and recent > LOSS_EXPLODES * first:
        return Flag(
            "loss_exploding",
            "error",
            "The loss is exploding",
            f"The training loss is {recent:.3g} at step {step}, {recent / first:.1f} times its "
            f"first value ({first:.3g}): the updates are too large.",
            f"{_rate(learning_rate)}.",
            step,
        )
    if len(points) >= RISING_STEPS:
        third = len(points) // 3
        start = statistics.fmean(v for _, v in points[:third])
        end = statistics.fmean(v for _, v in points[-third:])
        lowest = min(v for _, v in points)
        if start > 0 and end > RISING_FACTOR * start and end > RISING_FACTOR * lowest:
            return Flag(
                "loss_rising",
                "warning",
                "The loss is rising",
                f"The training loss rose from about {start:.3g} to {end:.3g} by step {step}; "
                "it should fall.",
                f"{_rate(learning_rate)}, or use more warmup steps.",
                step,
            )
    return None


def _gradient(series: Series, learning_rate: float | None) -> Flag | None:
    points = [(s, v) for s, v in _points(series, "grad_norm") if math.isfinite(v)]
    if not points:
        return None
    zero = 0
    for step, value in points:
        zero = zero + 1 if value <= ZERO_GRAD else 0
        if zero >= ZERO_GRAD_STEPS:
            return Flag(
                "grad_zero",
                "error",
                "Nothing is learning",
                f"The gradient norm has been 0 for {zero} steps (step {step}): no weight changes.",
                "Check that max length leaves room for the answers (the loss is taken on them), "
                "that the answers are not empty, and that the learning rate is not 0.",
                step,
            )
    baseline = statistics.median(v for _, v in points[:5])
    for step, value in points[1:]:
        if value > GRAD_EXPLODES or (len(points) > 5 and value > GRAD_JUMP * max(baseline, 1e-3)):
            return Flag(
                "grad_exploding",
                "error",
                "The gradients are exploding",
                f"The gradient norm reached {value:.3g} at step {step} (the first steps' was "
                f"about {baseline:.3g}).",
                f"{_rate(learning_rate)}, and keep max grad norm at 1 so each update is clipped.",
                step,
            )
    return None


def _updates_explode(series: Series, learning_rate: float | None) -> Flag | None:
    for step, value in _points(series, "update_ratio"):
        if math.isfinite(value) and value > UPDATE_EXPLODES:
            return Flag(
                "updates_exploding",
                "error",
                "The updates are exploding",
                f"Step {step} changed the trained weights by {value:.3g} times their own size "
                "(a healthy step changes them by about a thousandth): the learning rate throws "
                "away what the model knew.",
                f"{_rate(learning_rate)}.",
                step,
            )
    return None


def _eval_stalls(series: Series) -> Flag | None:
    points = [(s, v) for s, v in _points(series, "eval_loss") if math.isfinite(v)]
    if len(points) <= STALLED_EVALUATIONS:
        return None
    best_before = min(v for _, v in points[:-STALLED_EVALUATIONS])
    recent = [v for _, v in points[-STALLED_EVALUATIONS:]]
    if min(recent) < best_before * (1 - IMPROVEMENT):
        return None
    step, last = points[-1]
    if last > best_before * (1 + 5 * IMPROVEMENT):
        return Flag(
            "eval_rising",
            "warning",
            "The eval loss is rising",
            f"The eval loss was {best_before:.4g} at best and is {last:.4g} at step {step}: "
            "the model is memorising the training examples (overfitting).",
            "Train fewer epochs or steps, lower the learning rate, set early stopping, or add "
            "more varied data.",
            step,
        )
    return Flag(
        "eval_flat",
        "warning",
        "The eval loss stopped improving",
        f"The last {STALLED_EVALUATIONS} evaluations did not beat {best_before:.4g} "
        f"(now {last:.4g} at step {step}).",
        "More steps will not help: stop here, or raise the learning rate a little, or check "
        "that the test split resembles the training data.",
        step,
    )


def _answers(samples: SampleSets) -> list[Flag]:
    trained = [step for step, items in samples.items() if step > 0 and items]
    if not trained:
        return []
    step = max(trained)
    items = samples[step]
    answers = [str(item.get("answer") or "").strip() for item in items]
    flags = []
    if not any(answers):
        blank = all(item.get("ended") is False for item in items)
        flags.append(
            Flag(
                "answers_empty",
                "warning",
                "Every sample answer is empty",
                f"At step {step} the model answers every prompt with "
                + ("tokens that show as nothing." if blank else "nothing: it ends at once."),
                "Check that the dataset's answers are not empty and that max length leaves room "
                "for them; train longer.",
                step,
            )
        )
    elif len(answers) > 1 and len(set(answers)) == 1:
        flags.append(
            Flag(
                "answers_identical",
                "warning",
                "Every sample answer is the same",
                f"At step {step} the model answers every prompt with {answers[0][:80]!r}.",
                "The model may have collapsed to one answer: lower the learning rate, or train "
                "on more varied data for more steps.",
                step,
            )
        )
    if items and all(item.get("ended") is False for item in items):
        flags.append(
            Flag(
                "answers_never_end",
                "warning",
                "The answers never end",
                f"At step {step} every sample answer ran to the sample's token limit without "
                "an end of turn.",
                "Train longer (the model has not learned where an answer stops yet); check that "
                "the dataset's answers are complete, and raise sample max new tokens if they "
                "are long.",
                step,
            )
        )
    return flags


def _chat_template(logs: Sequence[Mapping[str, Any]]) -> Flag | None:
    for entry in logs:
        message = str(entry.get("message") or "")
        if message.startswith(NO_CHAT_TEMPLATE):
            return Flag(
                "no_chat_template",
                "warning",
                "No chat template in the inputs",
                message,
                "Train on a dataset processed as conversations (user and assistant turns), so "
                "the model learns Gemma's turn format and knows where an answer ends.",
            )
    return None


def health_flags(
    series: Series,
    samples: SampleSets,
    logs: Sequence[Mapping[str, Any]] = (),
    learning_rate: float | None = None,
) -> list[Flag]:
    """What looks wrong with a run that reported `series` (its metrics), `samples` and `logs`
    (each with `level` and `message`); `learning_rate` is its setting, for the advice. Errors
    first; an empty list for a run that looks healthy so far."""
    flags = [
        _not_finite(series, learning_rate),
        _loss_explodes(series, learning_rate),
        _gradient(series, learning_rate),
        _updates_explode(series, learning_rate),
        _eval_stalls(series),
        *_answers(samples),
        _chat_template(logs),
    ]
    found = [flag for flag in flags if flag is not None]
    if any(f.code == "loss_not_finite" for f in found):  # the rest follows from it
        found = [f for f in found if f.code in ("loss_not_finite", "no_chat_template")]
    return sorted(found, key=lambda f: f.level != "error")
