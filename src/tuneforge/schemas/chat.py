"""Chat API contracts: a conversation for one model, the answer, and the models to chat with."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.inference.params import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    EngineName,
    GenerationParams,
    Turn,
)


class ChatRequest(GenerationParams):
    """A conversation for one model, with how to sample (Gemma's recommended sampling by
    default). Send the same conversation to two models for a side-by-side comparison."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="A catalog id (e.g. `gemma-3-270m`) or the id of one of your fine-tuned models."
    )
    messages: list[Turn] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="The conversation so far: user and assistant take turns, ending with a user "
        "message.",
    )
    system: str | None = Field(
        None,
        max_length=MAX_MESSAGE_CHARS,
        description="A system prompt (Gemma folds it into the first user turn).",
    )
    stream: bool = Field(
        True, description="Stream Server-Sent Events (`delta`, then `done`), or answer once."
    )
    engine: EngineName = Field(
        "auto", description="`auto` picks the fastest engine that can serve the model here."
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ChatAnswer(BaseModel):
    model: str
    message: Turn
    finish_reason: Literal["stop", "length"]
    usage: Usage
    engine: str = Field(description="The engine that answered: llama.cpp, transformers or vllm.")


class ChatModelPublic(BaseModel):
    id: str
    name: str
    base: str
    fine_tuned: bool
    test_only: bool
    created_at: datetime | None


class ChatModelList(BaseModel):
    items: list[ChatModelPublic]
