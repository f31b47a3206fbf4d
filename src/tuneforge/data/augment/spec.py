"""What an augmentation does: `AugmentSpec`, its methods with their rates, and what it rewrites.

Each method is a small model named by `name` (a discriminated union), so the REST schema, the
CLI and the docs describe every method's own settings. Text methods rewrite words, image methods
rewrite the pixels of a row's images; a method that needs a language model (paraphrase,
back-translation) would be one more member of `Method` and one more module beside `text_ops`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Rate = Annotated[float, Field(gt=0, le=0.5)]
METHOD_NAME = "The method (text: synonym, insert, swap, delete; images: flip, crop, rotate, color)."


class _Method(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SynonymMethod(_Method):
    """Replace words with a WordNet synonym (needs WordNet's data on the server)."""

    name: Literal["synonym"] = Field(default="synonym", description=METHOD_NAME)
    rate: Rate = Field(
        default=0.1,
        description="Share of a text's words replaced (at least one): 0.1 replaces 1 word in 10.",
    )


class InsertMethod(_Method):
    """Insert a WordNet synonym of one of the text's words at a random place (needs WordNet)."""

    name: Literal["insert"] = Field(default="insert", description=METHOD_NAME)
    rate: Rate = Field(
        default=0.1, description="Words inserted per word of the text (at least one)."
    )


class SwapMethod(_Method):
    """Swap two words of the text, as often as the rate says."""

    name: Literal["swap"] = Field(default="swap", description=METHOD_NAME)
    rate: Rate = Field(default=0.1, description="Swaps per word of the text (at least one).")


class DeleteMethod(_Method):
    """Delete each word with the rate's probability (at least one word goes, one stays)."""

    name: Literal["delete"] = Field(default="delete", description=METHOD_NAME)
    rate: Rate = Field(default=0.1, description="The probability that a word is deleted.")


class FlipMethod(_Method):
    """Mirror the row's images."""

    name: Literal["flip"] = Field(default="flip", description=METHOD_NAME)
    direction: Literal["horizontal", "vertical"] = Field(
        default="horizontal",
        description="`horizontal`: left becomes right (most photos); `vertical`: upside down.",
    )


class CropMethod(_Method):
    """Cut a random margin off the images and scale them back to their size."""

    name: Literal["crop"] = Field(default="crop", description=METHOD_NAME)
    rate: Rate = Field(
        default=0.1, description="The largest share of the width and height cut off."
    )


class RotateMethod(_Method):
    """Turn the images by a random angle, keeping their size (corners filled with black)."""

    name: Literal["rotate"] = Field(default="rotate", description=METHOD_NAME)
    degrees: float = Field(
        default=15, gt=0, le=180, description="The largest angle, either way, in degrees."
    )


class ColorMethod(_Method):
    """Jitter brightness, contrast and saturation."""

    name: Literal["color"] = Field(default="color", description=METHOD_NAME)
    rate: Rate = Field(
        default=0.2,
        description="Each of brightness, contrast and saturation is scaled by a random factor "
        "between 1 - rate and 1 + rate.",
    )


Method = Annotated[
    SynonymMethod
    | InsertMethod
    | SwapMethod
    | DeleteMethod
    | FlipMethod
    | CropMethod
    | RotateMethod
    | ColorMethod,
    Field(discriminator="name"),
]
TEXT_METHODS = frozenset({"synonym", "insert", "swap", "delete"})
IMAGE_METHODS = frozenset({"flip", "crop", "rotate", "color"})
#: The methods that read WordNet.
WORDNET_METHODS = frozenset({"synonym", "insert"})


class AugmentSpec(BaseModel):
    """How to augment a processed dataset's train split (its other splits are copied)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        max_length=200,
        description="The new dataset's name (default: the source's, with ' (augmented)').",
    )
    methods: list[Method] = Field(
        min_length=1,
        max_length=8,
        description="The methods, each with its settings, e.g. "
        '`[{"name": "swap", "rate": 0.1}, {"name": "flip"}]`.',
    )
    copies: int = Field(
        default=1, ge=1, le=10, description="Variants made of each train row (at most)."
    )
    combine: Literal["one", "all"] = Field(
        default="one",
        description="`one`: each variant uses one of the methods, picked at random among those "
        "that can change the row; `all`: each variant goes through every method in turn.",
    )
    rewrite: Literal["prompts", "answers", "both"] = Field(
        default="prompts",
        description="Which texts the text methods change: the user's turns (`prompts`, the "
        "default: changed answers would teach wrong answers), the assistant's (`answers`; "
        "plain-text data is all answer), or `both`. System prompts, tool calls and tool "
        "results are never changed.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="The same seed makes the same variants (each row seeded from it and its "
        "position, whatever the batching).",
    )

    def method_names(self) -> list[str]:
        return [method.name for method in self.methods]
