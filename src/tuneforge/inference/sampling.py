"""Which sampling suits a model: one decision, used by the Playground and by `POST /api/v1/chat`
for every value a request leaves out.

A pre-trained (`pt`) Gemma, and a fine-tune of one, answers greedily and briefly: sampling at
temperature 1 from a small model (or a fine-tune trained on a few hundred examples) wanders off
into unrelated text, where the greedy answer is the one its training made likeliest, the same one
its run page's samples show. An instruction-tuned (`it`) Gemma, and a fine-tune of one, gets
Gemma's recommended sampling (temperature 1, top-p 0.95, top-k 64).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tuneforge.inference.params import GenerationParams
from tuneforge.models.catalog import CatalogEntry

#: A short answer for a base model: it rarely ends its turn by itself.
BASE_MAX_NEW_TOKENS = 128
#: The fields the defaults set (the others keep `GenerationParams`' defaults).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty")

Kind = Literal["pt", "it"]


@dataclass(frozen=True)
class SamplingDefaults:
    """The sampling a model gets unless told otherwise, with the reason in one line."""

    kind: Kind
    params: GenerationParams
    reason: str
    #: A warning to show beside a pre-trained base model (None for fine-tunes and `it` models).
    note: str | None = None

    def values(self) -> dict[str, float | int]:
        """The sampling fields, as a form holds them."""
        return {name: getattr(self.params, name) for name in SAMPLING_FIELDS}


def sampling_defaults(
    entry: CatalogEntry | None, *, fine_tuned: bool = False, name: str | None = None
) -> SamplingDefaults:
    """The defaults for a model whose catalog base is `entry` (None: unknown, treated as `it`);
    `fine_tuned` for a fine-tune of it, `name` for the note (the entry's name by default)."""
    shown = name or (entry.name if entry else "This model")
    if entry is not None and entry.variant == "pt":
        what = "a fine-tune of a pre-trained base" if fine_tuned else "a pre-trained base model"
        return SamplingDefaults(
            kind="pt",
            params=GenerationParams(temperature=0.0, max_new_tokens=BASE_MAX_NEW_TOKENS),
            reason=f"greedy (temperature 0), up to {BASE_MAX_NEW_TOKENS} tokens: {shown} is "
            f"{what}, and its likeliest answer is the one training taught it; sampling makes it "
            "wander.",
            note=None
            if fine_tuned
            else f"{shown} is a pre-trained base model: it continues text; fine-tune it or "
            "pick an -it model.",
        )
    params = GenerationParams(temperature=1.0, top_p=0.95, top_k=64)
    return SamplingDefaults(
        kind="it",
        params=params,
        reason=f"Gemma's recommended sampling (temperature 1, top-p 0.95, top-k 64), up to "
        f"{params.max_new_tokens} tokens: {shown} is instruction-tuned"
        + (" (a fine-tune of one)." if fine_tuned else "."),
    )
