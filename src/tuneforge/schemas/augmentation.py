"""Augmentation contracts: the preview of what an augmentation would make."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VariantShown(BaseModel):
    methods: str = Field(description="The methods that made it, joined by `+`.")
    rendered: str = Field(description="The variant as training sees it (Gemma's chat format).")
    images: list[str] = Field(description="A thumbnail (JPEG data: URL) of each of its images.")
    tokens: int = Field(description="Its length in Gemma tokens.")


class OriginalShown(BaseModel):
    row: int = Field(description="Its position in the train split.")
    rendered: str = Field(description="The row as training sees it.")
    images: list[str] = Field(description="A thumbnail of each of its images.")
    tokens: int = Field(description="Its length in Gemma tokens.")
    variants: list[VariantShown] = Field(
        description="Its variants (fewer than the copies asked for when some came out equal "
        "to the row or to each other, none when no method can change it)."
    )


class AugmentCost(BaseModel):
    money: float = Field(
        description="What the job costs in money: 0 for offline methods and local models; the "
        "LLM tokens at the price given for an endpoint."
    )
    currency: str = Field(default="USD", description="The currency of `money`.")
    seconds: float = Field(
        description="Estimated time of the job, from the time the preview took per row."
    )
    note: str = Field(description="How the estimate was made.")


class LLMUsage(BaseModel):
    requests: int = Field(description="Estimated requests the job sends to the model(s).")
    prompt_tokens: int = Field(description="Estimated tokens of those requests' prompts.")
    completion_tokens: int = Field(description="Estimated tokens of the model's replies.")
    price_per_1k_tokens: float = Field(
        description="The price per 1,000 tokens (prompt and reply) the estimate used; 0 for "
        "a local model."
    )
    money: float = Field(description="Estimated cost of those tokens at that price.")
    note: str = Field(description="How the estimate was made.")


class AugmentPreview(BaseModel):
    examples: list[OriginalShown] = Field(description="The first train rows beside their variants.")
    rows_in: int = Field(description="Rows in the source's train split.")
    rows_out: int = Field(
        description="Estimated rows in the new train split: the source's plus the variants, "
        "at the rate the previewed rows made them."
    )
    rows_out_max: int = Field(description="At most this many: every row with every copy.")
    copied_splits: dict[str, int] = Field(
        description="The other splits (the test split), copied unchanged: their rows."
    )
    tokens_in: int = Field(
        description="Estimated Gemma tokens in the source's train split (the previewed rows' "
        "mean times its rows)."
    )
    tokens_out: int = Field(description="Estimated Gemma tokens in the new train split.")
    llm: LLMUsage | None = Field(
        default=None,
        description="With an LLM method (paraphrase, back-translation): its requests, tokens "
        "and cost, estimated for the whole job.",
    )
    problems: list[str] = Field(
        default_factory=list,
        description="What the preview could not show: a local model's variants (made only by "
        "the job), requests that failed (their variants are left out) and why.",
    )
    cost: AugmentCost = Field(description="The job's estimated cost and time.")
