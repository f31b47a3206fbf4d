"""OpenAI-compatible request shapes (`/v1`), so the official `openai` client works unchanged.

Unknown fields are accepted and ignored, as clients send many optional ones; the sampling fields
TuneForge honours map onto `GenerationParams`. Unset ones take Gemma's recommended sampling
rather than OpenAI's defaults. `top_k` and `repetition_penalty` are accepted as extensions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from tuneforge.inference.params import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_PARTS,
    MAX_STOP_STRINGS,
    MAX_TOOL_CALLS,
    MAX_TOOLS,
    TOOL_NAME,
    TextPart,
    Tool,
    ToolCall,
)
from tuneforge.schemas.chat import ChatImagePart, ChatPart, ChatTurn, ImageUrl
from tuneforge.strict_numbers import Integer, OptionalInteger, OptionalNumber


class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="A catalog id or the id of one of your fine-tuned models.")
    temperature: OptionalNumber = Field(None, ge=0.0, le=2.0, description="Default 1.0.")
    top_p: OptionalNumber = Field(None, gt=0.0, le=1.0, description="Default 0.95.")
    top_k: OptionalInteger = Field(None, ge=0, le=1000, description="Extension; default 64.")
    repetition_penalty: OptionalNumber = Field(
        None, ge=0.5, le=2.0, description="Extension; default 1.0 (none)."
    )
    seed: OptionalInteger = Field(None, ge=0, le=2**32 - 1, description="Same seed, same answer.")
    stop: str | list[str] | None = Field(None, description="Up to 4 stop strings.")
    n: Integer = Field(1, ge=1, le=1, description="One choice per request.")
    stream: StrictBool = Field(False, description="Stream chunks as Server-Sent Events.")
    stream_options: dict[str, Any] | None = Field(
        None, description="`include_usage`: a last chunk with the token counts."
    )

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop
        if stops is not None and len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings")
        return stops

    def generation(self, max_new_tokens: int) -> dict[str, Any]:
        """The `GenerationParams` fields the client set (the rest keep their defaults)."""
        values = self.model_dump(
            include={"temperature", "top_p", "top_k", "repetition_penalty", "seed", "stop"},
            exclude_none=True,
        )
        return {**values, "max_new_tokens": max_new_tokens}

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = Field(description="`text` or `image_url` (a vision model's images).")
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS, description="The part's text.")
    image_url: ImageUrl | str | None = Field(
        None, description="`{url}`: the image as a `data:` URL (`data:image/png;base64,...`)."
    )

    def part(self) -> ChatPart:
        if self.type == "text":
            return TextPart(text=self.text or "")
        if self.type == "image_url" and self.image_url is not None:
            url = (
                self.image_url
                if isinstance(self.image_url, ImageUrl)
                else ImageUrl(url=self.image_url)
            )
            return ChatImagePart(image_url=url)
        raise ValueError(
            f"Content parts of type {self.type!r} are not supported here: send text and "
            "image_url parts."
        )


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="`developer` counts as `system`; `tool`: a tool's result."
    )
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[ContentPart], Field(max_length=MAX_PARTS)]
        | None
    ) = Field(None, description="Text, or a list of `text` and `image_url` parts.")
    tool_calls: list[ToolCall] | None = Field(
        None, max_length=MAX_TOOL_CALLS, description="An assistant message's calls of tools."
    )
    tool_call_id: str | None = Field(
        None, max_length=200, description="A tool message: the call it answers."
    )
    name: str | None = Field(
        None, pattern=TOOL_NAME, description="A tool message: the tool (else found by its call)."
    )

    def turn(self, calls: dict[str, str]) -> ChatTurn:
        """This message as TuneForge's chat takes it; `calls`: the tool of each call id so far."""
        role = "system" if self.role == "developer" else self.role
        extra: dict[str, Any] = {}
        if self.tool_calls:
            extra["tool_calls"] = self.tool_calls
        if role == "tool":
            extra["name"] = self.name or calls.get(self.tool_call_id or "")
            if extra["name"] is None:
                raise ValueError(
                    "A tool message needs the tool_call_id of a call made before it (or a name)."
                )
        if self.content is None or isinstance(self.content, str):
            return ChatTurn(role=role, content=self.content or "", **extra)
        parts = [part.part() for part in self.content]
        if not any(isinstance(part, ChatImagePart) for part in parts):  # text parts: one text
            text = "".join(p.text for p in parts)  # type: ignore[union-attr]
            return ChatTurn(role=role, content=text, **extra)
        return ChatTurn(role=role, content=parts, **extra)


class ChatCompletionRequest(Sampling):
    messages: list[OpenAIMessage] = Field(
        min_length=1, max_length=MAX_MESSAGES, description="The conversation so far."
    )
    max_tokens: OptionalInteger = Field(None, ge=1, le=8192, description="Default 512.")
    max_completion_tokens: OptionalInteger = Field(
        None, ge=1, le=8192, description="Takes precedence over `max_tokens`."
    )
    tools: list[Tool] | None = Field(
        None,
        max_length=MAX_TOOLS,
        description="Tools the model may call; its calls come back as `tool_calls`.",
    )
    tool_choice: str | dict[str, Any] | None = Field(
        None,
        description="`auto` (the default with tools: the model decides) or `none` (the tools "
        "are not offered). Forcing a call is not supported.",
    )

    @property
    def max_new_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 512

    def offered_tools(self) -> list[Tool] | None:
        """The tools the model is offered, by `tool_choice`."""
        if self.tool_choice in (None, "auto"):
            return self.tools or None
        if self.tool_choice == "none":
            return None
        raise ValueError(
            "tool_choice may be 'auto' or 'none': TuneForge lets the model decide whether to "
            "call a tool and cannot force a call."
        )

    def turns(self) -> list[ChatTurn]:
        """The conversation as TuneForge's chat takes it, each tool result named after its
        call's tool."""
        calls: dict[str, str] = {}
        turns = []
        for message in self.messages:
            for call in message.tool_calls or ():
                if call.id:
                    calls[call.id] = call.function.name
            turns.append(message.turn(calls))
        return turns


class CompletionRequest(Sampling):
    prompt: str = Field(max_length=MAX_MESSAGE_CHARS, description="Text to continue, as is.")
    max_tokens: Integer = Field(16, ge=1, le=8192, description="OpenAI's default, 16.")
    echo: StrictBool = Field(False, description="Put the prompt before the answer.")
