"""Chat API contracts: a conversation for one model, the answer, and the models to chat with."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from tuneforge.inference.params import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_PARTS,
    MAX_TOOL_CALLS,
    MAX_TOOLS,
    TOOL_NAME,
    EngineName,
    GenerationParams,
    TextPart,
    Tool,
    ToolCall,
    Turn,
    check_tool_fields,
)
from tuneforge.models.availability import Availability


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI's `detail` is accepted and ignored

    url: str = Field(
        description="The image as a `data:` URL (`data:image/png;base64,...`; PNG, JPEG, WebP, "
        "GIF or BMP). An http(s) URL is fetched only from hosts an administrator allows "
        "(`image_url_hosts`)."
    )


class ChatImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["image_url"] = Field(
        "image_url", description="`image_url`: an image, where it stands in the message."
    )
    image_url: ImageUrl = Field(description="The image (the OpenAI shape).")


ChatPart = Annotated[TextPart | ChatImagePart, Field(discriminator="type")]


class ChatTurn(BaseModel):
    """One message of a conversation: a text, or a list of text and image parts (images go to
    vision models only)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"] = Field(
        description="Who says it (`tool`: a tool's result)."
    )
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[ChatPart], Field(min_length=1, max_length=MAX_PARTS)]
    ) = Field("", description="What is said: text, or `text` and `image_url` parts in order.")
    tool_calls: list[ToolCall] | None = Field(
        None, max_length=MAX_TOOL_CALLS, description="An assistant message's calls of tools."
    )
    name: str | None = Field(
        None, pattern=TOOL_NAME, description="A `tool` message's tool: whose result it is."
    )

    @model_validator(mode="after")
    def _tool_fields(self) -> ChatTurn:
        check_tool_fields(self.role, self.tool_calls, self.name)
        return self


class ChatRequest(GenerationParams):
    """A conversation for one model, with how to sample. A sampling field left out takes the
    model's default, not the value shown in this schema: greedy (temperature 0) and 128 tokens for
    a pre-trained base (`pt`) and its fine-tunes, Gemma's recommended sampling (temperature 1,
    top-p 0.95, top-k 64, 512 tokens) for an instruction-tuned (`it`) one. Send the same
    conversation to two models for a side-by-side comparison."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="A catalog id (e.g. `gemma-3-270m`) or the id of one of your fine-tuned models."
    )
    messages: list[ChatTurn] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="The conversation so far: user and assistant take turns, ending with a user "
        "message. A message's content is a string or a list of parts: `{type: text, text}` and "
        "`{type: image_url, image_url: {url}}` with a `data:` URL (vision models only; at most 8 "
        "images per request, each checked for size and type before it is decoded).",
    )
    system: str | None = Field(
        None,
        max_length=MAX_MESSAGE_CHARS,
        description="A system prompt (Gemma folds it into the first user turn).",
    )
    tools: list[Tool] | None = Field(
        None,
        max_length=MAX_TOOLS,
        description="Tools the model may call (OpenAI's definitions); a call comes back as the "
        "answer's `tool_calls`, and its result goes in a `tool` message.",
    )
    stream: StrictBool = Field(
        True, description="Stream Server-Sent Events (`delta`, then `done`), or answer once."
    )
    engine: EngineName = Field(
        "auto", description="`auto` picks the fastest engine that can serve the model here."
    )


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the conversation the model read.")
    completion_tokens: int = Field(description="Tokens of the answer.")


class ChatAnswer(BaseModel):
    model: str = Field(description="The model that answered.")
    message: Turn = Field(description="The answer, as an assistant message.")
    finish_reason: Literal["stop", "length", "tool_calls"] = Field(
        description="`stop`: the model ended its turn or met a stop string; `length`: "
        "`max_new_tokens` was reached; `tool_calls`: the model called tools and waits for "
        "their results."
    )
    usage: Usage = Field(description="Token counts.")
    engine: str = Field(description="The engine that answered: llama.cpp, transformers or vllm.")
    engine_note: str | None = Field(
        None,
        description="Why a faster engine did not answer: a LoRA fine-tune whose llama.cpp fast "
        "path is off (its adapter cannot be converted, or its check failed) says so here.",
    )


class ChatModelPublic(BaseModel):
    id: str = Field(description="What to send as `model`: a catalog id or a model id.")
    name: str = Field(description="A human name.")
    base: str = Field(description="The catalog model it is (or was fine-tuned from).")
    fine_tuned: bool = Field(description="One of your fine-tuned models.")
    test_only: bool = Field(description="Random weights, for tests and smoke runs.")
    images: bool = Field(
        False, description="It reads images (a vision model, or a fine-tune of one)."
    )
    created_at: datetime | None = Field(description="When a fine-tuned model was made.")
    availability: Availability = Field(
        description="Whether it can run on this server: `available`, `downloadable` (with its "
        "size) or `unavailable` (with why; a chat with it is refused)."
    )


class ChatModelList(BaseModel):
    items: list[ChatModelPublic] = Field(description="Your fine-tuned models, then the catalog's.")
