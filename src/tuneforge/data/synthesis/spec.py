"""How training data is made from documents: which model writes it, what it writes, from what
chunks, and what is kept. One spec, many faces: the API, the form, the CLI and the docs read
its fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.data.documents.chunking import ChunkSettings
from tuneforge.data.synthesis.curate import CurationSettings
from tuneforge.data.synthesis.generator import GeneratorSpec
from tuneforge.data.synthesis.templates import MAX_TEMPLATE_CHARS, Task, check_template
from tuneforge.errors import InvalidInput
from tuneforge.strict_numbers import Integer


class SynthesisSpec(BaseModel):
    """Synthetic examples from documents: for each chunk, the generator is asked (with the
    task's template) for `pairs_per_chunk` examples, which curation then filters."""

    model_config = ConfigDict(extra="forbid")

    generator: GeneratorSpec = Field(
        description="The model that writes the examples: an OpenAI-compatible endpoint "
        '(`{"kind": "endpoint", "base_url": ..., "model": ...}`) or a TuneForge model run in '
        'the worker (`{"kind": "local", "model": "gemma-3-270m"}`).'
    )
    task: Task = Field(
        default="qa",
        description="What to write: `qa` question/answer pairs, `instructions` "
        "instruction/response pairs, `summaries` summaries of parts of the text, `reasoning` "
        "questions answered step by step.",
    )
    template: str | None = Field(
        default=None,
        max_length=MAX_TEMPLATE_CHARS,
        description="Your own prompt for each chunk instead of the task's default: `{text}` "
        "(required) is replaced by the chunk, `{document}`, `{section}`, `{pages}` and "
        "`{count}` by its source and the number of examples to ask for. Ask for a JSON list "
        "of objects with the task's two fields (such as question and answer).",
    )
    pairs_per_chunk: Integer = Field(
        default=3,
        ge=1,
        le=20,
        description="Examples asked for from each chunk (`{count}`). More per chunk gives more "
        "data per request, but later ones tend to repeat or stray from the text.",
    )
    chunking: ChunkSettings = Field(
        default_factory=ChunkSettings, description="How the documents are cut into chunks."
    )
    curation: CurationSettings = Field(
        default_factory=CurationSettings, description="Which generated examples are kept."
    )
    max_chunks: Integer = Field(
        default=500,
        ge=1,
        le=20_000,
        description="Most chunks sent to the model (the first ones, in document order): a bound "
        "on time and cost. A page of text is about one chunk of 512 tokens.",
    )
    seed: Integer = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Seeds near-duplicate removal, so the same examples give the same dataset.",
    )

    @field_validator("template")
    @classmethod
    def _known_fields(cls, template: str | None) -> str | None:
        if template is None or not template.strip():
            return None
        try:
            return check_template(template)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
