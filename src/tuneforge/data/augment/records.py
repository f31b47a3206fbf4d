"""Variants of processed records, with lineage: the heart of augmentation.

`variants_of(record, index, spec)` makes up to `spec.copies` variants of the train row at
`index`, each from its own generator seeded by the spec's seed and the row's index, so the
same seed makes the same variants however the rows are batched. A variant keeps the record's
shape: the same roles, turns and keys; only the text parts of the turns `spec.rewrite` names
(user turns for prompts, assistant turns for answers, a plain-text row's text for answers) and,
with an image method, the bytes of `images` change. System turns, tool calls and tool results,
image parts and control tokens are never touched. A variant equal to its source or to an
earlier variant of it is left out.

With an LLM method (paraphrase, back-translation) a variant is made in two steps, so that a
batch's requests go to the model together: `plan_variants` marks the texts to rewrite (see
`llm.py`), a `Rewriter` asks the model, and `finish_variants` puts its answers in place, leaving
out a variant whose request failed. Word methods run before the LLM ones in a variant.

`augment_records(records, spec)` is the whole step for rows in memory: the originals (their
lineage empty) then the variants, each naming its source row (`augmented_from`) and its methods
(`augmentation`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tuneforge.data.augment import text_ops
from tuneforge.data.augment.images import ImageMethod, augment_image
from tuneforge.data.augment.llm import Planner, Rewriter, put_back, rewritable_text
from tuneforge.data.augment.spec import (
    IMAGE_METHODS,
    LLM_METHODS,
    WORDNET_METHODS,
    AugmentSpec,
    BackTranslationMethod,
    LLMMethod,
    Method,
    ParaphraseMethod,
)
from tuneforge.data.augment.synonyms import wordnet

FROM = "augmented_from"
METHODS = "augmentation"
LINEAGE = (FROM, METHODS)
Record = dict[str, Any]
TextEdit = Callable[[str], str]


def _roles(spec: AugmentSpec) -> set[str]:
    return {"prompts": {"user"}, "answers": {"assistant"}, "both": {"user", "assistant"}}[
        spec.rewrite
    ]


def _edit_message(message: Mapping[str, Any], edit: TextEdit) -> dict[str, Any]:
    """The message with its text edited (a string content, or each text part); every other
    key (tool calls and the like) and every other part (images) as it was."""
    out = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        out["content"] = edit(content)
    elif isinstance(content, list):
        out["content"] = [
            {**part, "text": edit(part["text"])}
            if isinstance(part, Mapping) and part.get("type") == "text" and part.get("text")
            else part
            for part in content
        ]
    return out


def _edit_turns(turns: Any, roles: set[str], edit: TextEdit) -> Any:
    if isinstance(turns, Mapping):  # a single message (some preference layouts)
        return _edit_message(turns, edit) if turns.get("role") in roles else turns
    if not isinstance(turns, list):
        return turns
    return [
        _edit_message(m, edit) if isinstance(m, Mapping) and m.get("role") in roles else m
        for m in turns
    ]


def rewritable(record: Mapping[str, Any], spec: AugmentSpec) -> bool:
    """Whether the text methods have anything to change in `record`."""
    marker: list[bool] = []

    def probe(text: str) -> str:
        marker.append(bool(text_ops.Words.of(text).words))
        return text

    edit_text(record, spec, probe)
    return any(marker)


def edit_text(record: Mapping[str, Any], spec: AugmentSpec, edit: TextEdit) -> Record:
    """`record` with `edit` applied to the texts `spec.rewrite` names."""
    roles = _roles(spec)
    out = dict(record)
    if "messages" in record:
        out["messages"] = _edit_turns(record["messages"], roles, edit)
    elif "prompt" in record:
        out["prompt"] = _edit_turns(record["prompt"], roles, edit)
        for answer in ("chosen", "rejected", "completion"):
            if answer in record:
                out[answer] = _edit_turns(record[answer], roles, edit)
    elif isinstance(record.get("text"), str) and "assistant" in roles:
        out["text"] = edit(record["text"])
    return out


#: Each word method: (method, generator) -> a function that rewrites one text. The LLM methods
#: are planned instead (`_plan_llm`).
TEXT_EDITS: dict[str, Callable[[Any, random.Random], TextEdit]] = {
    "swap": lambda m, rng: lambda text: text_ops.swap(text, m.rate, rng),
    "delete": lambda m, rng: lambda text: text_ops.delete(text, m.rate, rng),
    "synonym": lambda m, rng: lambda text: text_ops.replace(text, m.rate, rng, wordnet().synonyms),
    "insert": lambda m, rng: lambda text: text_ops.insert(text, m.rate, rng, wordnet().synonyms),
}


def _text_edit(method: Method, rng: random.Random) -> TextEdit:
    if method.name in WORDNET_METHODS:
        wordnet()  # refuse now, naming what to install, when WordNet is missing
    return TEXT_EDITS[method.name](method, rng)


def _applicable(methods: list[Method], has_text: bool, has_images: bool) -> list[Method]:
    return [m for m in methods if (has_images if m.name in IMAGE_METHODS else has_text)]


def _plan_llm(
    record: Record,
    method: LLMMethod,
    spec: AugmentSpec,
    rng: random.Random,
    planner: Planner | None,
) -> Record:
    """`record` with the texts `method` rewrites marked: each rewritable text with the method's
    probability, at least one."""
    if planner is None:
        raise ValueError(f"{method.name} asks a language model: plan it with a Planner.")
    count = 0

    def counted(text: str) -> str:
        nonlocal count
        count += rewritable_text(text)
        return text

    edit_text(record, spec, counted)
    if not count:
        return record
    chosen = {i for i in range(count) if rng.random() < method.probability}
    return edit_text(record, spec, planner.edit(method, chosen or {rng.randrange(count)}))


def _apply(
    record: Record,
    methods: list[Method],
    spec: AugmentSpec,
    rng: random.Random,
    planner: Planner | None = None,
) -> Record:
    variant = record
    images = [m for m in methods if m.name in IMAGE_METHODS]
    text = [m for m in methods if m.name not in IMAGE_METHODS]
    for method in sorted(text, key=lambda m: m.name in LLM_METHODS):  # the LLM ones last
        if isinstance(method, LLM_TYPES):
            variant = _plan_llm(variant, method, spec, rng, planner)
        else:
            variant = edit_text(variant, spec, _text_edit(method, rng))
    if images and record.get("images"):
        variant = dict(variant)
        picked: list[ImageMethod] = images  # type: ignore[assignment]
        variant["images"] = [augment_image(data, picked, rng) for data in record["images"]]
    return variant


def _rng(spec: AugmentSpec, index: int) -> random.Random:
    return random.Random(f"tuneforge-augment:{spec.seed}:{index}")  # noqa: S311 (not secrets)


def _content(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in LINEAGE}


@dataclass
class Planned:
    """A row's variants as planned: texts an LLM rewrites are still markers."""

    index: int
    source: Record
    variants: list[tuple[Record, str]]


def plan_variants(
    record: Mapping[str, Any], index: int, spec: AugmentSpec, planner: Planner | None = None
) -> Planned:
    """The variants of the train row at `index` (up to `spec.copies`), the texts LLM methods
    rewrite handed to `planner` (needed only with an LLM method)."""
    rng = _rng(spec, index)
    source = _content(record)
    methods = _applicable(list(spec.methods), rewritable(source, spec), bool(source.get("images")))
    planned = Planned(index, source, [])
    if not methods:
        return planned
    seen = [source]
    for _ in range(spec.copies):
        used = [rng.choice(methods)] if spec.combine == "one" else methods
        variant = _apply(copy.deepcopy(source), used, spec, rng, planner)
        if variant in seen:
            continue
        seen.append(variant)
        planned.variants.append((variant, "+".join(m.name for m in used)))
    return planned


def finish_variants(
    planned: Planned,
    spec: AugmentSpec,
    rewriter: Rewriter | None = None,
    planner: Planner | None = None,
) -> list[Record]:
    """The planned variants with the model's texts in place and their lineage; a variant whose
    request failed (counted by `rewriter`) or that came out equal to its source or an earlier
    variant is left out."""
    seen = [planned.source]
    variants: list[Record] = []
    for planned_variant, methods in planned.variants:
        variant = planned_variant
        if planner is not None:
            put, missing = put_back(planner.rewrites)
            variant = edit_text(planned_variant, spec, put)
            if missing():
                if rewriter is not None:
                    rewriter.skipped_variants += 1
                continue
        if variant in seen:
            continue
        seen.append(variant)
        variants.append({**variant, FROM: planned.index, METHODS: methods})
    return variants


def variants_of(
    record: Mapping[str, Any], index: int, spec: AugmentSpec, rewriter: Rewriter | None = None
) -> list[Record]:
    """Up to `spec.copies` variants of the train row at `index`, with their lineage (a
    `rewriter` asks the model for the LLM methods)."""
    return variants_of_rows([record], index, spec, rewriter)


def variants_of_rows(
    records: Iterable[Mapping[str, Any]],
    start: int,
    spec: AugmentSpec,
    rewriter: Rewriter | None = None,
) -> list[Record]:
    """The variants of the rows at `start`, `start + 1`, ... in their order, the LLM methods'
    requests sent together through `rewriter`."""
    if spec.llm_methods() and rewriter is None:
        raise ValueError("An LLM method needs a Rewriter to ask the model.")
    planner = Planner() if rewriter is not None else None
    planned = [plan_variants(r, i, spec, planner) for i, r in enumerate(records, start)]
    if planner is not None and rewriter is not None and planner.rewrites:
        rewriter.run(planner.rewrites)
    return [v for p in planned for v in finish_variants(p, spec, rewriter, planner)]


def original(record: Mapping[str, Any]) -> Record:
    """A source row as it stays in the augmented split: its lineage as it was (a row made by
    an earlier augmentation keeps naming its source), empty for a row never augmented."""
    return {**record, FROM: record.get(FROM), METHODS: record.get(METHODS)}


def augment_records(
    records: Iterable[Mapping[str, Any]],
    spec: AugmentSpec,
    *,
    start: int = 0,
    rewriter: Rewriter | None = None,
) -> list[Record]:
    """The rows of a train split (the first at position `start`) then their variants, every
    row with its lineage (a `rewriter` asks the model for the LLM methods)."""
    rows = list(records)
    return [original(r) for r in rows] + variants_of_rows(rows, start, spec, rewriter)


LLM_TYPES = (ParaphraseMethod, BackTranslationMethod)


def needs_wordnet(spec: AugmentSpec) -> bool:
    return any(name in WORDNET_METHODS for name in spec.method_names())
