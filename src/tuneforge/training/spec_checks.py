"""Settings that pass the spec's bounds but are almost surely wrong (warnings), or cannot work
(refusals), judged against the dataset they would train on.

The Train page shows each beside its field; the `train` kind's launch check refuses the
refusals, so the API says the same before anything is queued. Every finding names its fields
and says what to change.

Training cuts each example to its first `max_length` tokens (`components/tokenize.py`): with
the loss on the answers only, an example whose prompt fills `max_length` keeps no token to learn
from. The dataset's statistics (`data/stats.py`) give the prompt and answer lengths of its final
exchange, which is every answer when the conversations are single exchanges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tuneforge.training.spec import TrainingBase

if TYPE_CHECKING:  # the statistics pull numpy and the tokenizer: not for every CLI start
    from tuneforge.data.stats import DatasetStats

Severity = Literal["warning", "refusal"]
#: Above these peak learning rates a run almost surely diverges: (LoRA-like, full).
HIGH_LEARNING_RATE = {"adapters": 1e-2, "full": 1e-3}
#: Below these it learns next to nothing in a run of ordinary length.
LOW_LEARNING_RATE = {"adapters": 1e-6, "full": 1e-7}
TYPICAL_LEARNING_RATE = {"adapters": "1e-4 to 3e-4", "full": "1e-5 to 5e-5"}
#: Rows of a single exchange have at most this many turns (a user and an assistant message).
SINGLE_EXCHANGE = 2
LENGTH_STEP = 64
LONGEST = 131_072


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the settings: `fields` to change, and what and why."""

    fields: tuple[str, ...]
    message: str
    severity: Severity = "warning"


@dataclass(frozen=True)
class DatasetFacts:
    """What a recipe's own checks know of the dataset a run would learn from."""

    mode: str  # the processing mode: conversation | preference | feedback | prompt_only | ...
    columns: tuple[str, ...]  # the processed rows' columns
    stats: DatasetStats | None
    train_rows: int


def check_spec(spec: TrainingBase, stats: DatasetStats | None, train_rows: int) -> list[Finding]:
    """What is wrong with `spec` for a dataset with `stats` and `train_rows` training rows."""
    return [
        *_learning_rate(spec),
        *_max_length(spec, stats),
        *_steps(spec, train_rows),
    ]


def refusals(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.severity == "refusal"]


def stats_of(data: dict[str, Any] | None) -> DatasetStats | None:
    """A dataset record's statistics, or None when it has none (or an older shape)."""
    from tuneforge.data.stats import DatasetStats

    if not data:
        return None
    try:
        return DatasetStats.model_validate(data)
    except ValueError:
        return None


def _learning_rate(spec: TrainingBase) -> list[Finding]:
    kind = "full" if spec.method == "full" else "adapters"
    what = "full fine-tuning" if kind == "full" else "LoRA"
    rate, typical = spec.learning_rate, TYPICAL_LEARNING_RATE[kind]
    if rate > HIGH_LEARNING_RATE[kind]:
        return [
            Finding(
                ("learning_rate",),
                f"Learning rate {rate:g} is far above what {what} trains with ({typical}): the "
                f"loss will likely jump or become NaN. Try {typical.split(' to ')[0]}.",
            )
        ]
    if rate < LOW_LEARNING_RATE[kind]:
        return [
            Finding(
                ("learning_rate",),
                f"Learning rate {rate:g} is so small that {what} will learn next to nothing "
                f"({typical} is usual).",
            )
        ]
    return []


def _max_length(spec: TrainingBase, stats: DatasetStats | None) -> list[Finding]:
    if stats is None or stats.total_tokens.count == 0 or stats.answer_tokens.max == 0:
        return []
    prompt, total, length = stats.prompt_tokens, stats.total_tokens, spec.max_length
    answers_only = bool(getattr(spec, "assistant_only_loss", False))
    suggestion = min(LONGEST, max(LENGTH_STEP, math.ceil(total.p95 / LENGTH_STEP) * LENGTH_STEP))
    single = max(stats.turns, default=0) <= SINGLE_EXCHANGE
    if answers_only and single and prompt.min >= length:
        return [
            Finding(
                ("max_length",),
                f"Max length {length} cuts every answer away: even the shortest prompt is "
                f"{prompt.min} tokens, so no answer token is left to learn from. Raise max "
                f"length to {suggestion} (95% of the examples fit in it; the longest is "
                f"{total.max}).",
                "refusal",
            )
        ]
    if answers_only and prompt.p50 >= length:
        return [
            Finding(
                ("max_length",),
                f"Max length {length} cuts away the whole answer of most examples (half of "
                f"the prompts are {prompt.p50} tokens or longer): they teach nothing. Raise it "
                f"to {suggestion}.",
            )
        ]
    if stats.answer_tokens.p50 > length:
        return [
            Finding(
                ("max_length",),
                f"Max length {length} is shorter than most answers (half of them are "
                f"{stats.answer_tokens.p50} tokens or longer): they are cut, and the model "
                f"learns answers that stop midway. Raise it to {suggestion}.",
            )
        ]
    if length < total.min:
        return [
            Finding(
                ("max_length",),
                f"Max length {length} is shorter than every example (the shortest is "
                f"{total.min} tokens): each one loses the end of its answer, and the model "
                f"learns answers that stop midway. Raise it to {suggestion}.",
            )
        ]
    return []


def _steps(spec: TrainingBase, train_rows: int) -> list[Finding]:
    if train_rows <= 0:
        return []
    batch = spec.effective_batch
    if spec.max_steps is not None:
        seen = spec.max_steps * batch
        if seen < train_rows:
            needed = math.ceil(train_rows / batch)
            return [
                Finding(
                    ("max_steps",),
                    f"Max steps {spec.max_steps} with {batch} examples a step see {seen} of "
                    f"the {train_rows} training examples: the run stops before one epoch. Raise "
                    f"max steps to at least {needed}, or empty it to train by epochs.",
                )
            ]
        return []
    if spec.epochs < 1:
        return [
            Finding(
                ("epochs",),
                f"Epochs {spec.epochs:g} sees only part of the {train_rows} training examples: "
                "the run stops before one pass over the data. Use at least 1 epoch.",
            )
        ]
    return []
