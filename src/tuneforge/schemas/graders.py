"""Grader contracts: trying a set of reward graders on one completion before a run uses them,
and the library of grader types the Train page builds sets from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.training.rewards.spec import Graders

MAX_TRIED_CHARS = 100_000


class GraderTry(BaseModel):
    """A grader set, a completion to grade and the dataset row it answers."""

    model_config = ConfigDict(extra="forbid")

    graders: Graders = Field(description="The graders, as a GRPO spec's `graders` holds them.")
    completion: str = Field(
        max_length=MAX_TRIED_CHARS, description="A completion, as the model could write it."
    )
    row: dict[str, Any] = Field(
        default_factory=dict,
        max_length=200,
        description="The dataset row it answers: the reference columns the graders read (such "
        "as `answer` or `schema`) and, for a judge, the `prompt` (a text or the row's messages).",
    )


class GradeTried(BaseModel):
    name: str = Field(description="The grader's name.")
    type: str = Field(description="The grader's type.")
    weight: float = Field(description="Its weight in the total.")
    score: float | None = Field(
        description="Its score, 0..1; null when it could not grade (a judge that failed)."
    )
    reason: str = Field(description="Why it gave this score, or why it could not grade.")


class GraderTrial(BaseModel):
    """What each grader made of the completion, and the total reward."""

    grades: list[GradeTried] = Field(description="Each grader's grade, in the set's order.")
    total: float = Field(
        description="The reward: the sum of each score times its grader's weight (graders "
        "that could not grade count 0)."
    )
    max_total: float = Field(description="The highest total the set can give: its weights' sum.")


class GraderType(BaseModel):
    type: str = Field(description="The grader type, a spec's `type`.")
    title: str = Field(description="Its name for people.")
    explanation: str = Field(description="What it checks and how it scores, in one paragraph.")
    example: dict[str, Any] = Field(description="A grader spec of this type.")
    json_schema: dict[str, Any] = Field(
        alias="schema", description="The JSON Schema of its fields, with their descriptions."
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
