"""Token counts and statistics of augmented rows, the way processing measures its rows.

Each row is split into its rendered prompt and answer (`rendered_texts`), counted with the real
Gemma tokenizer (`count_tokens`), and fed to the same `StatsBuilder` as processing, so an
augmented dataset's statistics (lengths, turns, duplicates, pairs, feedback, labels, images)
read like any processed dataset's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokenizers import Tokenizer

from tuneforge.data.augment.records import LINEAGE
from tuneforge.data.images import ImageFacts, ImageRejected, checked_image
from tuneforge.data.process import rendered_texts, turns_of
from tuneforge.data.stats import GEMMA3_TOKENS_PER_IMAGE, DatasetStats, StatsBuilder
from tuneforge.models.tokenizer import count_tokens
from tuneforge.models.vision import image_tokens

IMAGE_EXTRA = image_tokens(1, GEMMA3_TOKENS_PER_IMAGE) - 1  # `<start_of_image>` counts one


def _facts(record: Mapping[str, Any]) -> list[ImageFacts]:
    facts = []
    for data in record.get("images") or ():
        try:
            facts.append(checked_image(data))
        except ImageRejected:
            continue
    return facts


def row_tokens(records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer) -> list[int]:
    """Each row's length in Gemma tokens (prompt + answer, images counted as the model reads
    them)."""
    return [p + a for p, a, _ in _counted(records, tokenizer)]


def _counted(
    records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer
) -> list[tuple[int, int, int | None]]:
    texts = [rendered_texts(record) for record in records]
    n = len(texts)
    pairs = [r for _, _, r in texts if r is not None]
    counts = count_tokens([p for p, _, _ in texts] + [a for _, a, _ in texts] + pairs, tokenizer)
    rejected = iter(counts[2 * n :])
    out = []
    for i, record in enumerate(records):
        prompt = counts[i] + IMAGE_EXTRA * len(record.get("images") or ())
        out.append((prompt, counts[n + i], next(rejected) if texts[i][2] is not None else None))
    return out


class AugmentedStats:
    """Statistics fed split by split, batch by batch; `finish()` gives `DatasetStats`."""

    def __init__(self, tokenizer: Tokenizer, config: Mapping[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.label_column: str | None = config.get("label_column")
        self.mode = str((config.get("mapping") or {}).get("mode", "conversation"))
        self.builder = StatsBuilder(label_column=self.label_column)
        self.columns: dict[str, None] = {}

    def add(self, split: str, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        counted = _counted(records, self.tokenizer)
        prompts = [p for p, _, _ in counted]
        answers = [a for _, a, _ in counted]
        longer = answers
        if self.mode == "preference":
            rejected = [r or 0 for _, _, r in counted]
            longer = list(map(max, answers, rejected))
            self.builder.add_pairs(split, prompts, answers, rejected)
        if self.mode == "feedback":
            self.builder.add_feedback(split, (bool(r.get("label")) for r in records))
        texts = ["".join(t for t in rendered_texts(r) if t) for r in records]
        labels = None
        if self.label_column is not None:
            labels = [r.get(self.label_column) for r in records]
        self.builder.add_lengths(
            split, prompts, longer, [turns_of(r) for r in records], texts, labels
        )
        self.builder.add_images([_facts(r) for r in records])
        for record in records:
            self.columns.update(dict.fromkeys(record))

    def finish(self) -> DatasetStats:
        if self.mode == "prompt_only":
            self.builder.reference_columns = [
                c for c in self.columns if c not in ("prompt", "images", "tools", *LINEAGE)
            ]
        return self.builder.finish()


def measure(
    splits: Mapping[str, Iterable[Sequence[Mapping[str, Any]]]],
    tokenizer: Tokenizer,
    config: Mapping[str, Any],
) -> DatasetStats:
    """Statistics of `splits` ({split: batches of rows})."""
    stats = AugmentedStats(tokenizer, config)
    for split, batches in splits.items():
        for batch in batches:
            stats.add(split, batch)
    return stats.finish()
