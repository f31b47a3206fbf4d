"""What an augmentation does: `AugmentSpec`, its methods with their rates, and what it rewrites.

Each method is a small model named by `name` (a discriminated union), so the REST schema, the
CLI and the docs describe every method's own settings. Text methods rewrite words, image methods
rewrite the pixels of a row's images, and the LLM methods (paraphrase, back-translation) have a
language model rewrite whole texts (`llm.py`), through a generator: the local inference of a
chosen model or an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tuneforge.data.synthesis.generator import GeneratorSpec
from tuneforge.strict_numbers import Integer, Number

Rate = Annotated[Number, Field(gt=0, le=0.5)]
METHOD_NAME = (
    "The method (text: synonym, insert, swap, delete; LLM: paraphrase, back_translation; "
    "images: flip, crop, rotate, color)."
)


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
    degrees: Number = Field(
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


def _template(fields: frozenset[str]) -> AfterValidator:
    """A prompt template: `{text}` once at least, and no field but `fields` (braces meant
    literally are doubled, `{{` and `}}`)."""

    def check(template: str) -> str:
        try:
            named = [
                name for _, name, _, _ in string.Formatter().parse(template) if name is not None
            ]
        except ValueError as exc:
            raise ValueError(
                f"the prompt is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
            ) from None
        unknown = sorted({n for n in named if n not in fields})
        if unknown:
            raise ValueError(
                f"the prompt names {', '.join('{' + n + '}' for n in unknown)}; it may use "
                f"{', '.join('{' + f + '}' for f in sorted(fields))} "
                "(a literal brace is {{ or }})"
            )
        if "text" not in named:
            raise ValueError("the prompt must contain {text}, where the text to rewrite goes")
        return template

    return AfterValidator(check)


PARAPHRASE_PROMPT = (
    "Rewrite the text below so that it says the same thing in different words. Keep its "
    "meaning, its language, its tone and every fact, name, number, piece of code and "
    "placeholder in it; do not answer it, shorten it or add anything. Reply with the "
    "rewritten text only.\n\nText:\n{text}"
)
TO_PIVOT_PROMPT = (
    "Translate the text below into {language}. Keep every name, number, piece of code and "
    "placeholder as it is; do not answer it or add anything. Reply with the translation "
    "only.\n\nText:\n{text}"
)
BACK_PROMPT = (
    "Translate the {language} text below into {source_language}. Keep every name, number, "
    "piece of code and placeholder as it is; do not answer it or add anything. Reply with "
    "the translation only.\n\nText:\n{text}"
)
Probability = Annotated[
    Number,
    Field(
        default=1.0,
        gt=0,
        le=1,
        description="The probability that each text `rewrite` names (each turn) is rewritten "
        "in a variant; at least one is. 1 rewrites them all.",
    ),
]
Language = Annotated[str, Field(min_length=2, max_length=40, pattern=r"^[^{}\n]+$")]


class _LLMMethod(_Method):
    generator: GeneratorSpec = Field(
        description='The model that rewrites: `{"kind": "local", "model": ...}` (a '
        'TuneForge model, run in the job) or `{"kind": "endpoint", "base_url": ..., '
        '"model": ..., "api_key_secret": ...}` (an OpenAI-compatible API).'
    )
    probability: Probability


class ParaphraseMethod(_LLMMethod):
    """Have a language model rewrite the text in other words, keeping its meaning."""

    name: Literal["paraphrase"] = Field(default="paraphrase", description=METHOD_NAME)
    prompt: Annotated[str, _template(frozenset({"text"}))] = Field(
        default=PARAPHRASE_PROMPT,
        min_length=6,
        max_length=4000,
        description="The request sent to the model, `{text}` standing for the text to rewrite.",
    )


class BackTranslationMethod(_LLMMethod):
    """Have a language model translate the text into a pivot language and back (two requests)."""

    name: Literal["back_translation"] = Field(default="back_translation", description=METHOD_NAME)
    language: Language = Field(
        default="French", description="The pivot language the text goes through."
    )
    source_language: Language = Field(
        default="English", description="The language of the data, which the text comes back to."
    )
    prompt: Annotated[str, _template(frozenset({"text", "language", "source_language"}))] = Field(
        default=TO_PIVOT_PROMPT,
        min_length=6,
        max_length=4000,
        description="The first request (into the pivot): `{text}`, `{language}` and "
        "`{source_language}` are filled in.",
    )
    back_prompt: Annotated[str, _template(frozenset({"text", "language", "source_language"}))] = (
        Field(
            default=BACK_PROMPT,
            min_length=6,
            max_length=4000,
            description="The second request (back from the pivot), with the same fields; "
            "`{text}` is the first request's translation.",
        )
    )


LLMMethod = ParaphraseMethod | BackTranslationMethod

Method = Annotated[
    SynonymMethod
    | InsertMethod
    | SwapMethod
    | DeleteMethod
    | ParaphraseMethod
    | BackTranslationMethod
    | FlipMethod
    | CropMethod
    | RotateMethod
    | ColorMethod,
    Field(discriminator="name"),
]
TEXT_METHODS = frozenset({"synonym", "insert", "swap", "delete", "paraphrase", "back_translation"})
#: The text methods that ask a language model.
LLM_METHODS = frozenset({"paraphrase", "back_translation"})
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
    copies: Integer = Field(
        default=1, ge=1, le=10, description="Variants made of each train row (at most)."
    )
    combine: Literal["one", "all"] = Field(
        default="one",
        description="`one`: each variant uses one of the methods, picked at random among those "
        "that can change the row; `all`: each variant goes through every method in turn.",
    )
    rewrite: Literal["prompts", "answers", "both"] = Field(
        default="prompts",
        description="Which texts the text methods (LLM ones too) change: the user's turns "
        "(`prompts`, the default: changed answers would teach wrong answers), the assistant's "
        "(`answers`; plain-text data is all answer), or `both`. System prompts, tool calls "
        "and tool results are never changed.",
    )
    seed: Integer = Field(
        default=0,
        ge=0,
        le=2**31 - 1,
        description="The same seed makes the same variants (each row seeded from it and its "
        "position, whatever the batching).",
    )

    def method_names(self) -> list[str]:
        return [method.name for method in self.methods]

    def llm_methods(self) -> list[LLMMethod]:
        """The methods that ask a language model, in their order."""
        return [m for m in self.methods if isinstance(m, ParaphraseMethod | BackTranslationMethod)]
