"""The mapping's settings: how the source stores turns and where each role's text comes from.

`MappingSpec` is the `mapping` of a processing config (`tuneforge.data.mapping.RowMapper` applies
it); formats TuneForge recognises get one filled in automatically (`tuneforge.data.formats`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

Mode = Literal["conversation", "prompt_only", "preference", "feedback", "language_modeling"]
Layout = Literal["messages", "sharegpt", "alpaca", "fields"]

# The fields that take their text from a column or a template (`FieldSource`).
SOURCE_FIELDS = ("system", "user", "assistant", "chosen", "rejected", "completion", "label", "text")
# What each mode reads in the `fields` layout, besides an optional system field.
FIELDS_NEEDED: dict[str, tuple[str, ...]] = {
    "conversation": ("user", "assistant"),
    "prompt_only": ("user",),
    "preference": ("user", "chosen", "rejected"),
    "feedback": ("user", "completion", "label"),
    "language_modeling": ("text",),
}
# What each mode reads besides the turns column in the messages/sharegpt layouts.
TURNS_NEEDED: dict[str, tuple[str, ...]] = {
    "preference": ("chosen", "rejected"),
    "feedback": ("label",),
}


class FieldSource(BaseModel):
    """Where one part of the conversation comes from: a column, or a template over columns."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(default=None, description="Take the text from this column.")
    template: str | None = Field(
        default=None, description="Build the text from columns, e.g. `Classify: {review}`."
    )

    @model_validator(mode="after")
    def _one(self) -> FieldSource:
        if (self.column is None) == (self.template is None):
            raise ValueError("give either a column or a template")
        return self


class MappingSpec(BaseModel):
    """How rows become conversations. Formats we recognise get this filled in automatically."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(
        default="conversation",
        description=(
            "`conversation`: prompts and answers for supervised fine-tuning; `prompt_only`: "
            "prompts for GRPO (other columns are kept for graders); `preference`: a prompt with "
            "a chosen and a rejected answer (DPO, ORPO, KTO); `feedback`: a prompt with one "
            "completion labelled desirable or not (KTO); `language_modeling`: plain text."
        ),
    )
    layout: Layout = Field(
        default="fields",
        description=(
            "How the source stores turns: `messages` (OpenAI/TRL role/content list), `sharegpt` "
            "(from/value list), `alpaca` (instruction/input/output), or `fields` (one column or "
            "template per role)."
        ),
    )
    messages_column: str | None = Field(
        default=None,
        description=(
            "The column holding the turns (layouts messages/sharegpt). For preference data it "
            "holds the prompt, ending with the user's turn; for feedback data, the prompt and, "
            "unless a completion field is given, the completion as its last turn."
        ),
    )
    system: FieldSource | None = Field(default=None, description="The system prompt, per row.")
    system_prompt: str | None = Field(
        default=None, description="One system prompt for every row (when no system field)."
    )
    user: FieldSource | None = Field(default=None, description="The user's turn (the prompt).")
    assistant: FieldSource | None = Field(
        default=None, description="The assistant's turn (the answer to learn)."
    )
    chosen: FieldSource | None = Field(
        default=None,
        description=(
            "The preferred answer (preference): a text, one turn, or a list of turns whose last "
            "assistant turn is the answer."
        ),
    )
    rejected: FieldSource | None = Field(
        default=None, description="The worse answer (preference), in the same forms as chosen."
    )
    implicit_prompt: StrictBool = Field(
        default=False,
        exclude_if=lambda on: not on,  # stored mappings name it only when it is on
        description=(
            "Preference, fields layout: chosen and rejected each hold a whole conversation (the "
            "same prompt turns, then the answer). The prompt is the turns they share; each "
            "answer is its conversation's last turn. Leave user empty."
        ),
    )
    completion: FieldSource | None = Field(
        default=None,
        description=(
            "The completion the label judges (feedback): a text, one turn, or a list of turns. "
            "In the messages/sharegpt layouts it may be left empty: the conversation's last "
            "turn is then the completion."
        ),
    )
    label: FieldSource | None = Field(
        default=None,
        description=(
            "Whether the completion is desirable (feedback): true/false, 1/0, yes/no, good/bad, "
            "thumbs up/down. Any other value is a row problem."
        ),
    )
    text: FieldSource | None = Field(default=None, description="The text (language modelling).")
    image_column: str | None = Field(
        default=None,
        description=(
            "A column with the row's image, or a list of its images: each a path inside the "
            "uploaded ZIP, a data: URL or base64 text, bytes, or a Parquet/HF image "
            "`{bytes, path}`. The n-th `<image>` in the text (or image part without its own "
            "image) takes the n-th image; with none, the images open the first user turn. URLs "
            "are never fetched."
        ),
    )

    tools_column: str | None = Field(
        default=None,
        exclude_if=lambda name: name is None,  # stored mappings name it only when there is one
        description=(
            "A column with each row's tool definitions (modes conversation and prompt_only): a "
            "list, or JSON text of one, of OpenAI tools `{type: function, function: {name, "
            "description, parameters}}` or bare `{name, description, parameters}`. Calls must "
            "name one of them with arguments that match its parameters' JSON schema."
        ),
    )

    @model_validator(mode="after")
    def _complete(self) -> MappingSpec:
        if self.layout in ("messages", "sharegpt") and not self.messages_column:
            raise ValueError(f"the {self.layout} layout needs messages_column")
        if self.tools_column and self.mode not in ("conversation", "prompt_only"):
            raise ValueError("tools are for the conversation and prompt_only modes")
        if self.implicit_prompt and (self.mode, self.layout) != ("preference", "fields"):
            raise ValueError("implicit_prompt is for the preference mode in the fields layout")
        if self.implicit_prompt and self.user is not None:
            raise ValueError("with implicit_prompt the prompt comes from chosen and rejected")
        needed = TURNS_NEEDED.get(self.mode, ())
        if self.layout == "fields":
            needed = FIELDS_NEEDED[self.mode]
            if self.implicit_prompt:
                needed = ("chosen", "rejected")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"mode {self.mode} needs {', '.join(missing)}")
        return self
