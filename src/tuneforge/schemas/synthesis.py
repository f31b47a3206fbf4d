"""Synthesis contracts: how far a synthesis from documents is, with the last pairs it kept."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SynthesisSample(BaseModel):
    prompt: str = Field(description="The pair's question (or instruction, or the text asked of).")
    answer: str = Field(description="What the model wrote for it.")
    source: str | None = Field(
        default=None, description="Where it comes from: document, pages, section, chunk."
    )


class SynthesisProgress(BaseModel):
    """A synthesis while it runs (and once it ended): what the live view shows."""

    dataset_id: str = Field(description="The dataset being made.")
    dataset_status: str = Field(description="`processing`, then `ready` or `failed`.")
    job_id: str = Field(description="The `dataset_synthesis` job that makes it.")
    status: str = Field(description="The job's status.")
    progress: float = Field(description="Fraction of the chunks done, 0..1.")
    message: str | None = Field(description="What the job is doing now.")
    error: str | None = Field(description="Why it failed or was cancelled.")
    chunks_done: int = Field(description="Chunks generated from (resumed ones included).")
    chunks_total: int = Field(description="Chunks of the documents to generate from.")
    kept: int = Field(description="Pairs kept so far (after near-duplicates, at the end).")
    dropped: dict[str, int] = Field(description="Pairs (or chunks) dropped, by reason.")
    prompt_tokens: int = Field(description="Tokens sent to the model so far.")
    completion_tokens: int = Field(description="Tokens the model wrote so far.")
    samples: list[SynthesisSample] = Field(description="The last pairs kept, newest last.")
    rows: int = Field(description="Rows of the finished dataset (0 until it is ready).")
