"""What a generation request carries between the web process and the inference server."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneforge.models.chat_template import BOS, GEMMA_3, ChatFormat
from tuneforge.strict_numbers import Integer, Number, OptionalInteger

EngineName = Literal["auto", "transformers", "llama.cpp", "vllm"]
MAX_STOP_STRINGS = 4


MAX_MESSAGES = 200
MAX_MESSAGE_CHARS = 100_000
#: Most parts in one message, and most images in one request (each image is 256 tokens of a
#: released Gemma 3's context).
MAX_PARTS = 64
MAX_IMAGES = 8
#: Most tools one request declares, and most calls in one message.
MAX_TOOLS = 64
MAX_TOOL_CALLS = 16
#: A tool's name as OpenAI allows it: letters, digits, underscores and dashes, up to 64.
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"] = Field("text", description="`text`: a piece of the message's text.")
    text: str = Field(max_length=MAX_MESSAGE_CHARS, description="The part's text.")


class ImagePart(BaseModel):
    """Where an image stands in the message (the image itself travels in `Generate.images`)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["image"] = Field(
        "image", description="`image`: where the next of the request's images stands."
    )


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOOL_NAME, description="The tool called.")
    arguments: str = Field(
        "{}", max_length=MAX_MESSAGE_CHARS, description="Its arguments: JSON text of an object."
    )

    @field_validator("arguments")
    @classmethod
    def _object(cls, arguments: str) -> str:
        try:
            value = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            raise ValueError("the arguments must be JSON text of an object") from None
        if not isinstance(value, dict):
            raise ValueError("the arguments must be a JSON object")
        return arguments or "{}"


class ToolCall(BaseModel):
    """A call of a tool, in OpenAI's shape."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=200, description="The call's id, if any.")
    type: Literal["function"] = Field("function", description="Always `function`.")
    function: FunctionCall = Field(description="Which tool, with which arguments.")


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=TOOL_NAME, description="The tool's name.")
    description: str | None = Field(
        None, max_length=10_000, description="What it does: the model reads it."
    )
    parameters: dict[str, Any] | None = Field(
        None, description="Its arguments as a JSON schema of an object."
    )


class Tool(BaseModel):
    """A tool the model may call, in OpenAI's shape."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = Field("function", description="Always `function`.")
    function: FunctionDefinition = Field(description="The tool.")


class Turn(BaseModel):
    """One message of a conversation: a text, or text and image parts; an assistant message
    may call tools, and a `tool` message holds a tool's result."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"] = Field(description="Who says it.")
    content: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[Part], Field(max_length=MAX_PARTS)]
    ) = Field("", description="What is said.")
    tool_calls: list[ToolCall] | None = Field(
        None, max_length=MAX_TOOL_CALLS, description="An assistant message's calls of tools."
    )
    name: str | None = Field(
        None, pattern=TOOL_NAME, description="A `tool` message's tool: whose result it is."
    )

    @model_validator(mode="after")
    def _tool_fields(self) -> Turn:
        check_tool_fields(self.role, self.tool_calls, self.name)
        return self

    @property
    def images(self) -> int:
        """How many images the message holds."""
        if isinstance(self.content, str):
            return 0
        return sum(isinstance(part, ImagePart) for part in self.content)


def check_tool_fields(role: str, tool_calls: list[ToolCall] | None, name: str | None) -> None:
    """Only assistant messages call tools; a tool message, and only one, names its tool."""
    if tool_calls and role != "assistant":
        raise ValueError("only assistant messages call tools")
    if (role == "tool") != (name is not None):
        raise ValueError("a tool message, and only a tool message, names its tool")


class GenerationParams(BaseModel):
    """How to pick tokens. The defaults are Gemma's recommended sampling."""

    model_config = ConfigDict(extra="forbid")

    temperature: Number = Field(
        1.0, ge=0.0, le=2.0, description="Randomness: 0 always picks the likeliest token."
    )
    top_p: Number = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Sample from the smallest set of tokens whose probabilities add up to this.",
    )
    top_k: Integer = Field(
        64, ge=0, le=1000, description="Sample from the k likeliest tokens (0: all)."
    )
    max_new_tokens: Integer = Field(512, ge=1, le=8192, description="Stop after this many tokens.")
    repetition_penalty: Number = Field(
        1.0, ge=0.5, le=2.0, description="Above 1 discourages repeating tokens already present."
    )
    stop: list[str] = Field(
        default_factory=list,
        max_length=MAX_STOP_STRINGS,
        description="Stop before any of these strings (the end of Gemma's turn always stops).",
    )
    seed: OptionalInteger = Field(None, ge=0, le=2**32 - 1, description="Same seed, same answer.")

    @field_validator("stop")
    @classmethod
    def _non_empty(cls, stop: list[str]) -> list[str]:
        if any(not s or len(s) > 100 for s in stop):
            raise ValueError("stop strings must hold 1 to 100 characters")
        return stop

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


class ModelRef(BaseModel):
    """A model the inference server can load: a catalog base, optionally with a fine-tune
    (a LoRA adapter or full weights in the artifact store)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(description="Catalog id of the base model.")
    artifact_key: str | None = Field(None, description="Artifact key of the fine-tuned files.")
    kind: Literal["base", "adapter", "full"] = "base"
    engine: EngineName = "auto"
    gguf: str | None = Field(
        None,
        description="The fine-tune's newest verified GGUF export, as `artifact_key/file name`: "
        "llama.cpp serves the fine-tune from it.",
    )
    mmproj: str | None = Field(
        None,
        description="The image projector exported beside `gguf` (`artifact_key/file name`, a "
        "file named `mmproj*.gguf`): llama.cpp reads images through it.",
    )
    images: bool = Field(
        False, description="The request holds images: `auto` picks an engine that reads them."
    )

    def weights(self, engine: str) -> str | None:
        """What `engine` loads besides the catalog base: the GGUF export for llama.cpp, the full
        fine-tuned weights otherwise (None: the base, plus an adapter if any)."""
        if engine == "llama.cpp":
            return self.gguf if self.mmproj is None else f"{self.gguf}+{self.mmproj}"
        return self.artifact_key if self.kind == "full" else None

    def needs_adapter(self, engine: str) -> bool:
        """Whether `engine` attaches the LoRA adapter (a GGUF export has it merged in)."""
        return self.kind == "adapter" and self.weights(engine) is None


def adapter_name(artifact_key: str) -> str:
    """A name for a fine-tune's files (a PEFT adapter name, a cache folder): artifact keys hold
    characters PEFT names may not."""
    return "a" + hashlib.sha256(artifact_key.encode()).hexdigest()[:16]


class Generate(BaseModel):
    """One request to the inference server: a conversation (or a raw prompt) for one model."""

    model_config = ConfigDict(extra="forbid")

    model: ModelRef
    messages: list[Turn] | None = Field(None, min_length=1, max_length=MAX_MESSAGES)
    prompt: str | None = Field(None, description="Raw text, used as is (no chat template).")
    params: GenerationParams = Field(default_factory=GenerationParams)
    images: list[str] = Field(
        default_factory=list,
        max_length=MAX_IMAGES,
        description="The conversation's images (encoded files, base64), in order of appearance.",
    )
    tools: list[Tool] | None = Field(
        None, max_length=MAX_TOOLS, description="The tools the model may call."
    )

    @classmethod
    def encode(cls, images: list[bytes]) -> list[str]:
        return [base64.b64encode(image).decode("ascii") for image in images]

    def image_bytes(self) -> list[bytes]:
        return [base64.b64decode(image) for image in self.images]

    def text(self, chat: ChatFormat = GEMMA_3) -> str:
        """The text the model continues: the conversation rendered in the model's chat format
        `chat` (one image placeholder per image: `<start_of_image>`, Gemma 4's `<|image|>`), or
        the raw prompt after Gemma's `<bos>` (which every Gemma input starts with)."""
        if self.messages is not None:
            messages = [t.model_dump() for t in self.messages]
            text = chat.render(messages, tools=self.tool_list(), add_generation_prompt=True)
            if sum(t.images for t in self.messages) != len(self.images):
                raise ValueError("The conversation's image parts and its images do not match.")
            token = chat.image_placeholder.strip()  # `<start_of_image>`, `<|image|>`
            if text.count(token) != len(self.images):
                raise ValueError(f"A message's text may not contain {token}: send images as parts.")
            return text
        if self.prompt is None:
            raise ValueError("Give messages or a prompt.")
        if self.tools:
            raise ValueError("Tools go with a conversation, not with a raw prompt.")
        if self.images:
            raise ValueError("Images go with a conversation, not with a raw prompt.")
        return self.prompt if self.prompt.startswith(BOS) else BOS + self.prompt

    def tool_list(self) -> list[dict[str, Any]] | None:
        """The tools as the chat template takes them (None: no tools)."""
        return [tool.model_dump(exclude_none=True) for tool in self.tools] if self.tools else None

    def stopping_at_calls(self, chat: ChatFormat) -> Generate:
        """This request, stopping where a model that called tools waits for their results."""
        if not self.tools:
            return self
        stop = [*self.params.stop, chat.tool_markers.response[0]]
        return self.model_copy(update={"params": self.params.model_copy(update={"stop": stop})})
