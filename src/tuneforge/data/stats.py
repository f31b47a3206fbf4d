"""Dataset statistics: token lengths in Gemma tokens, turns, labels and duplicates.

`StatsBuilder` is fed batches of conversations (so a large dataset never has to fit in memory)
and `finish()` returns `DatasetStats`. Each conversation is split by Gemma's chat template into
the prompt (up to and including `<start_of_turn>model\\n`) and the final answer, and both are
counted with the real Gemma 3 tokenizer. A row's total is prompt + answer: what training sees
when it tokenizes the two separately and puts the loss on the answer. Percentiles are nearest-rank
(the smallest length that at least p% of the rows do not exceed), so they are real lengths.

A preference pair is one example of prompt + its longer answer (what a trainer that runs both
sides pads to); its sides are also measured on their own, per split, with the margin (chosen
minus rejected, in tokens). Feedback data counts its desirable and undesirable completions;
prompt-only data names the reference columns it keeps for graders.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from tokenizers import Tokenizer

from tuneforge.data.images import ImageFacts
from tuneforge.models.chat_template import ChatMessage, prompt_and_answer, render
from tuneforge.models.tokenizer import count_tokens
from tuneforge.models.vision import image_tokens

# Gemma 3 reads each image as 256 soft tokens (plus 4 around them): what the lengths count.
GEMMA3_TOKENS_PER_IMAGE = 256
HISTOGRAM_BINS = 20
TOP_LABELS = 50
PERCENTILES = (50, 90, 95, 99)
MISSING_LABEL = "(missing)"


class HistogramBin(BaseModel):
    start: int = Field(description="Smallest length in the bin (inclusive).")
    end: int = Field(description="End of the bin (exclusive).")
    count: int = Field(description="How many rows have a length in [start, end).")


class LengthStats(BaseModel):
    count: int = Field(description="How many rows were measured.")
    min: int = Field(description="The shortest length, in Gemma tokens.")
    mean: float = Field(description="The mean length, in Gemma tokens.")
    p50: int = Field(description="The median: half of the rows are at most this long.")
    p90: int = Field(description="90% of the rows are at most this long.")
    p95: int = Field(description="95% of the rows are at most this long.")
    p99: int = Field(description="99% of the rows are at most this long.")
    max: int = Field(description="The longest length, in Gemma tokens.")
    histogram: list[HistogramBin] = Field(
        description="About 20 equal-width bins with round edges from the shortest to the "
        "longest length, for a chart."
    )


class LabelCount(BaseModel):
    label: str = Field(description="A value of the label column.")
    count: int = Field(description="How many rows have it.")


class LabelStats(BaseModel):
    column: str = Field(description="The label column.")
    distinct: int = Field(description="How many different values the column has.")
    top: list[LabelCount] = Field(description="The 50 most frequent values, most frequent first.")
    other: int = Field(description="Rows whose value is not among the top 50.")


class DuplicateStats(BaseModel):
    exact: int = Field(description="Rows identical to an earlier row (across all splits).")
    normalized: int = Field(
        description="Rows identical to an earlier row once lower-cased and with runs of "
        "whitespace collapsed (includes the exact duplicates)."
    )


class MarginStats(BaseModel):
    count: int = Field(description="How many pairs were measured.")
    min: int = Field(description="The smallest margin (negative: the rejected answer is longer).")
    mean: float = Field(description="The mean margin, chosen minus rejected, in Gemma tokens.")
    p10: int = Field(description="10% of the pairs have at most this margin.")
    p50: int = Field(description="The median margin.")
    p90: int = Field(description="90% of the pairs have at most this margin.")
    max: int = Field(description="The largest margin.")
    chosen_longer: int = Field(description="Pairs whose chosen answer is longer.")
    rejected_longer: int = Field(description="Pairs whose rejected answer is longer.")
    histogram: list[HistogramBin] = Field(
        description="About 20 equal-width bins with round edges, for a chart."
    )


class PairStats(BaseModel):
    prompt_tokens: LengthStats = Field(description="Prompt lengths, as for every example.")
    chosen_tokens: LengthStats = Field(
        description="Chosen answer lengths, with the closing `<end_of_turn>`."
    )
    rejected_tokens: LengthStats = Field(
        description="Rejected answer lengths, with the closing `<end_of_turn>`."
    )
    margin_tokens: MarginStats = Field(
        description="Chosen minus rejected length per pair: a large mean margin means length "
        "alone tells the answers apart, and a preference trainer may learn just that."
    )


class FeedbackCounts(BaseModel):
    desirable: int = Field(description="Completions labelled desirable.")
    undesirable: int = Field(description="Completions labelled undesirable.")


class SizeSummary(BaseModel):
    min: int = Field(description="The smallest value.")
    mean: float = Field(description="The mean value.")
    p50: int = Field(description="The median (nearest rank).")
    p90: int = Field(description="90% of the values are at most this (nearest rank).")
    max: int = Field(description="The largest value.")


class ImageStats(BaseModel):
    total: int = Field(description="Images in all kept rows.")
    rows_with_images: int = Field(description="Kept rows with at least one image.")
    per_row: dict[int, int] = Field(
        description="How many rows have each number of images (0: a text-only row)."
    )
    formats: dict[str, int] = Field(description="Images per file format (PNG, JPEG, ...).")
    pixels: SizeSummary = Field(description="Image sizes in pixels (width x height).")
    width: SizeSummary = Field(description="Image widths in pixels.")
    height: SizeSummary = Field(description="Image heights in pixels.")
    bytes: SizeSummary = Field(description="Image file sizes in bytes.")
    tokens_per_image: int = Field(
        description="Tokens each image adds to the lengths above: Gemma 3 reads an image as "
        "256 soft tokens framed by 4 more (`\\n\\n<start_of_image>` ... "
        "`<end_of_image>\\n\\n`), whatever its size (the processor resizes it to 896x896)."
    )


class DatasetStats(BaseModel):
    rows: dict[str, int] = Field(description="Rows per split, e.g. {'train': 900, 'test': 100}.")
    prompt_tokens: LengthStats = Field(
        description="Prompt lengths: the rendered conversation up to the final "
        "`<start_of_turn>model`, with `<bos>` and the chat template's tokens, and each image's "
        "tokens (see `images`)."
    )
    answer_tokens: LengthStats = Field(
        description="Final answer lengths, with the closing `<end_of_turn>`; 0 for rows "
        "without a final assistant turn (prompt-only rows)."
    )
    total_tokens: LengthStats = Field(
        description="Prompt + answer: how long each example is for training."
    )
    turns: dict[int, int] = Field(
        description="How many rows have each number of turns (user and assistant messages; "
        "a system prompt is not a turn)."
    )
    labels: LabelStats | None = Field(
        description="The label column's distribution, when a label column was given."
    )
    duplicates: DuplicateStats = Field(description="Repeated examples.")
    pairs: dict[str, PairStats] | None = Field(
        default=None,
        description="Preference data, per split: each side's length and the margin between "
        "them. Each example above is its prompt with the longer answer.",
    )
    feedback: dict[str, FeedbackCounts] | None = Field(
        default=None, description="Feedback data, per split: desirable and undesirable rows."
    )
    reference_columns: list[str] | None = Field(
        default=None,
        description="Prompt-only data: the columns kept beside the prompt, for graders to read.",
    )
    images: ImageStats | None = Field(
        default=None,
        exclude_if=lambda images: images is None,  # text data's statistics name no images
        description="Image data: image counts and sizes. Prompt and total lengths above count "
        "each image as `tokens_per_image` tokens.",
    )


Lengths = npt.NDArray[np.int64]


def histogram_width(span: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that cuts `span` into at most 20 bins (21
    once the first bin starts at a multiple of the width)."""
    raw = -(-span // HISTOGRAM_BINS)
    magnitude = int(10 ** (len(str(raw)) - 1))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


class _Distribution:
    """Exact length statistics from a running count of rows per length."""

    def __init__(self) -> None:
        self.frequency: Lengths = np.zeros(0, dtype=np.int64)

    def add(self, lengths: Lengths) -> None:
        counts = np.bincount(lengths, minlength=len(self.frequency))
        counts[: len(self.frequency)] += self.frequency
        self.frequency = counts

    def summary(self) -> LengthStats:
        n = int(self.frequency.sum())
        if n == 0:
            return LengthStats(
                count=0, min=0, mean=0, p50=0, p90=0, p95=0, p99=0, max=0, histogram=[]
            )
        cumulative = np.cumsum(self.frequency)
        present = np.flatnonzero(self.frequency)
        low, high = int(present[0]), int(present[-1])
        width = histogram_width(high - low + 1)
        starts = np.arange(low - low % width, high + 1, width)
        per_bin = np.add.reduceat(self.frequency[: high + 1], starts)
        quantiles = {
            f"p{p}": int(np.searchsorted(cumulative, -(-p * n // 100))) for p in PERCENTILES
        }
        return LengthStats(
            count=n,
            min=low,
            mean=float(np.dot(np.arange(len(self.frequency)), self.frequency) / n),
            max=high,
            histogram=[
                HistogramBin(start=int(start), end=int(start + width), count=int(count))
                for start, count in zip(starts, per_bin, strict=True)
            ],
            **quantiles,
        )


def _margins(values: Lengths) -> MarginStats:
    """Statistics of signed margins (nearest-rank percentiles, round-edged bins)."""
    n = len(values)
    if n == 0:
        return MarginStats(
            count=0, min=0, mean=0, p10=0, p50=0, p90=0, max=0,
            chosen_longer=0, rejected_longer=0, histogram=[],
        )  # fmt: skip
    ordered = np.sort(values)
    low, high = int(ordered[0]), int(ordered[-1])
    width = histogram_width(high - low + 1)
    start = low - low % width
    per_bin = np.bincount((ordered - start) // width)
    return MarginStats(
        count=n,
        min=low,
        mean=float(ordered.mean()),
        max=high,
        chosen_longer=int((values > 0).sum()),
        rejected_longer=int((values < 0).sum()),
        histogram=[
            HistogramBin(start=start + i * width, end=start + (i + 1) * width, count=int(count))
            for i, count in enumerate(per_bin)
        ],
        **{f"p{p}": int(ordered[-(-p * n // 100) - 1]) for p in (10, 50, 90)},
    )


def _prompt_and_answer(
    messages: Sequence[ChatMessage], tools: str | None = None
) -> tuple[str, str]:
    """The rendered prompt and answer, with the tools (JSON text, as records store them)."""
    declared = json.loads(tools) if tools else None
    if messages and messages[-1]["role"] == "assistant":
        return prompt_and_answer(messages, tools=declared)
    return render(messages, tools=declared, add_generation_prompt=True), ""


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


class StatsBuilder:
    """Accumulates statistics batch by batch: `add(split, conversations)`, then `finish()`."""

    def __init__(
        self, tokenizer: Tokenizer | None = None, *, label_column: str | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.label_column = label_column
        self.rows: Counter[str] = Counter()
        self.prompt, self.answer, self.total = _Distribution(), _Distribution(), _Distribution()
        self.turns: Counter[int] = Counter()
        self.labels: Counter[str] = Counter()
        self.exact: list[npt.NDArray[np.int64]] = []
        self.loose: list[npt.NDArray[np.int64]] = []
        self.pairs: dict[
            str, tuple[_Distribution, _Distribution, _Distribution, list[Lengths]]
        ] = {}
        self.feedback: dict[str, Counter[bool]] = {}
        self.reference_columns: list[str] | None = None
        self.images: list[list[ImageFacts]] = []

    def add_images(self, rows: Sequence[Sequence[ImageFacts]]) -> None:
        """Add a batch of rows' images (one list per kept row, empty for text-only rows)."""
        self.images += [list(facts) for facts in rows]

    def add(
        self,
        split: str,
        conversations: Sequence[Sequence[ChatMessage]],
        labels: Sequence[Any] | None = None,
        tools: Sequence[str | None] | None = None,
    ) -> None:
        """Add a batch of conversations (and their labels, when there is a label column, and
        their tools, JSON text as records store them, when they have some)."""
        if self.tokenizer is None:
            raise ValueError("Counting conversations needs the builder's tokenizer.")
        if not conversations:
            return
        declared = tools if tools is not None else [None] * len(conversations)
        prompts, answers = zip(*map(_prompt_and_answer, conversations, declared), strict=True)
        self.add_lengths(
            split,
            count_tokens(prompts, self.tokenizer),
            count_tokens(answers, self.tokenizer),
            [sum(m["role"] != "system" for m in c) for c in conversations],
            list(map(str.__add__, prompts, answers)),
            labels,
        )

    def add_lengths(
        self,
        split: str,
        prompt_lengths: Sequence[int],
        answer_lengths: Sequence[int],
        turns: Sequence[int],
        texts: Sequence[str],
        labels: Sequence[Any] | None = None,
    ) -> None:
        """Add a batch whose tokens were already counted (`texts`: the rendered examples)."""
        if (labels is None) != (self.label_column is None):
            raise ValueError("Give labels exactly when the builder has a label column.")
        prompt = np.asarray(prompt_lengths, dtype=np.int64)
        answer = np.asarray(answer_lengths, dtype=np.int64)
        self.prompt.add(prompt)
        self.answer.add(answer)
        self.total.add(prompt + answer)
        self.rows[split] += len(texts)
        self.turns.update(turns)
        if labels is not None:
            self.labels.update(MISSING_LABEL if v is None else str(v) for v in labels)
        self.exact.append(np.fromiter(map(hash, texts), dtype=np.int64, count=len(texts)))
        self.loose.append(
            np.fromiter(map(hash, map(_normalized, texts)), dtype=np.int64, count=len(texts))
        )

    def add_pairs(
        self,
        split: str,
        prompt_lengths: Sequence[int],
        chosen_lengths: Sequence[int],
        rejected_lengths: Sequence[int],
    ) -> None:
        """Add the sides of preference pairs (each pair also added once by `add_lengths`)."""
        prompt, chosen, rejected, margins = self.pairs.setdefault(
            split, (_Distribution(), _Distribution(), _Distribution(), [])
        )
        chosen_array = np.asarray(chosen_lengths, dtype=np.int64)
        rejected_array = np.asarray(rejected_lengths, dtype=np.int64)
        prompt.add(np.asarray(prompt_lengths, dtype=np.int64))
        chosen.add(chosen_array)
        rejected.add(rejected_array)
        margins.append(chosen_array - rejected_array)

    def add_feedback(self, split: str, labels: Iterable[bool]) -> None:
        """Add feedback rows' labels (True: desirable)."""
        self.feedback.setdefault(split, Counter()).update(labels)

    def finish(self) -> DatasetStats:
        n = sum(self.rows.values())
        label_stats = None
        if self.label_column is not None:
            top = self.labels.most_common(TOP_LABELS)
            label_stats = LabelStats(
                column=self.label_column,
                distinct=len(self.labels),
                top=[LabelCount(label=label, count=count) for label, count in top],
                other=n - sum(count for _, count in top),
            )
        return DatasetStats(
            rows=dict(self.rows),
            prompt_tokens=self.prompt.summary(),
            answer_tokens=self.answer.summary(),
            total_tokens=self.total.summary(),
            turns=dict(sorted(self.turns.items())),
            labels=label_stats,
            duplicates=DuplicateStats(
                exact=n - _distinct(self.exact), normalized=n - _distinct(self.loose)
            ),
            pairs={
                split: PairStats(
                    prompt_tokens=prompt.summary(),
                    chosen_tokens=chosen.summary(),
                    rejected_tokens=rejected.summary(),
                    margin_tokens=_margins(np.concatenate(margins)),
                )
                for split, (prompt, chosen, rejected, margins) in self.pairs.items()
            }
            or None,
            feedback={
                split: FeedbackCounts(desirable=counts[True], undesirable=counts[False])
                for split, counts in self.feedback.items()
            }
            or None,
            reference_columns=self.reference_columns,
            images=_image_stats(self.images) if any(self.images) else None,
        )


def _summary(values: Sequence[int]) -> SizeSummary:
    ordered = np.sort(np.asarray(values, dtype=np.int64))
    n = len(ordered)
    return SizeSummary(
        min=int(ordered[0]),
        mean=float(ordered.mean()),
        p50=int(ordered[-(-50 * n // 100) - 1]),
        p90=int(ordered[-(-90 * n // 100) - 1]),
        max=int(ordered[-1]),
    )


def _image_stats(rows: list[list[ImageFacts]]) -> ImageStats:
    every = [facts for row in rows for facts in row]
    return ImageStats(
        total=len(every),
        rows_with_images=sum(bool(row) for row in rows),
        per_row=dict(sorted(Counter(map(len, rows)).items())),
        formats=dict(Counter(facts.format for facts in every).most_common()),
        pixels=_summary([facts.pixels for facts in every]),
        width=_summary([facts.width for facts in every]),
        height=_summary([facts.height for facts in every]),
        bytes=_summary([facts.bytes for facts in every]),
        tokens_per_image=image_tokens(1, GEMMA3_TOKENS_PER_IMAGE),
    )


def _distinct(hashes: list[npt.NDArray[np.int64]]) -> int:
    return len(np.unique(np.concatenate(hashes))) if hashes else 0


def compute_stats(
    splits: Mapping[str, Iterable[Mapping[str, Any]]],
    tokenizer: Tokenizer,
    *,
    messages_column: str = "messages",
    label_column: str | None = None,
    batch_size: int = 8192,
) -> DatasetStats:
    """Statistics over processed rows, per split (`{"train": rows, "test": rows}`), read in
    batches: each row holds its conversation in `messages_column` (`prompt` for prompt-only
    datasets), its tools in `tools` when it has some and, optionally, a label in
    `label_column`."""
    builder = StatsBuilder(tokenizer, label_column=label_column)
    for split, rows in splits.items():
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, batch_size)):
            builder.add(
                split,
                [row[messages_column] for row in batch],
                None if label_column is None else [row.get(label_column) for row in batch],
                [row.get("tools") for row in batch],
            )
    return builder.finish()
