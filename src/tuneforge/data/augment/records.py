"""Variants of processed records, with lineage: the heart of augmentation.

`variants_of(record, index, spec)` makes up to `spec.copies` variants of the train row at
`index`, each from its own generator seeded by the spec's seed and the row's index, so the
same seed makes the same variants however the rows are batched. A variant keeps the record's
shape: the same roles, turns and keys; only the text parts of the turns `spec.rewrite` names
(user turns for prompts, assistant turns for answers, a plain-text row's text for answers) and,
with an image method, the bytes of `images` change. System turns, tool calls and tool results,
image parts and control tokens are never touched. A variant equal to its source or to an
earlier variant of it is left out.

`augment_records(records, spec)` is the whole step for rows in memory: the originals (their
lineage empty) then the variants, each naming its source row (`augmented_from`) and its methods
(`augmentation`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tuneforge.data.augment import text_ops
from tuneforge.data.augment.images import ImageMethod, augment_image
from tuneforge.data.augment.spec import IMAGE_METHODS, WORDNET_METHODS, AugmentSpec, Method
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


#: Each text method: (method, generator) -> a function that rewrites one text. A method that
#: asks a language model (paraphrase, back-translation) is one more entry here, from its module.
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


def _apply(record: Record, methods: list[Method], spec: AugmentSpec, rng: random.Random) -> Record:
    variant = record
    images = [m for m in methods if m.name in IMAGE_METHODS]
    for method in methods:
        if method.name not in IMAGE_METHODS:
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


def variants_of(record: Mapping[str, Any], index: int, spec: AugmentSpec) -> list[Record]:
    """Up to `spec.copies` variants of the train row at `index`, with their lineage."""
    rng = _rng(spec, index)
    source = _content(record)
    methods = _applicable(list(spec.methods), rewritable(source, spec), bool(source.get("images")))
    seen = [source]
    variants: list[Record] = []
    if not methods:
        return variants
    for _ in range(spec.copies):
        used = [rng.choice(methods)] if spec.combine == "one" else methods
        variant = _apply(copy.deepcopy(source), used, spec, rng)
        if variant in seen:
            continue
        seen.append(variant)
        variants.append({**variant, FROM: index, METHODS: "+".join(m.name for m in used)})
    return variants


def original(record: Mapping[str, Any]) -> Record:
    """A source row as it stays in the augmented split: its lineage as it was (a row made by
    an earlier augmentation keeps naming its source), empty for a row never augmented."""
    return {**record, FROM: record.get(FROM), METHODS: record.get(METHODS)}


def augment_records(
    records: Iterable[Mapping[str, Any]], spec: AugmentSpec, *, start: int = 0
) -> list[Record]:
    """The rows of a train split (the first at position `start`) then their variants, every
    row with its lineage."""
    originals: list[Record] = []
    variants: list[Record] = []
    for index, record in enumerate(records, start):
        originals.append(original(record))
        variants += variants_of(record, index, spec)
    return originals + variants


def needs_wordnet(spec: AugmentSpec) -> bool:
    return any(name in WORDNET_METHODS for name in spec.method_names())
