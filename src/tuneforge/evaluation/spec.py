"""What an `evaluate` job does: which models answer which samples, scored by which suite.

Importing this module stays cheap (the web process validates specs): the JSON Schema check
imports `jsonschema` only when a schema is given.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from tuneforge.evaluation.judge import JudgeSpec
from tuneforge.strict_numbers import Integer, Number
from tuneforge.training.rewards.spec import Graders
from tuneforge.training.rewards.spec import Judge as JudgeGrader

Suite: TypeAlias = Literal[
    "classification",
    "extraction",
    "summarisation",
    "translation",
    "json",
    "conversation",
    "perplexity",
    "vibe",
    "rewards",
    "preference",
    "tool_calls",
]
NO_ANSWERS = frozenset({"perplexity", "preference"})
"""Suites that score the dataset's own texts: the models generate nothing."""


class EvaluationSpec(BaseModel):
    """One or two models answer the same samples of a processed dataset's split, and a suite
    scores their answers against the references (the split's last assistant turns; for
    `tool_calls`, the first ones that call tools)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1,
        max_length=200,
        description="The model evaluated (A): a catalog id such as `gemma-3-270m` or the id of "
        "one of your fine-tuned models.",
    )
    compare_with: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A second model (B) that answers the same samples; the results then show "
        "each metric's difference: fine-tune vs base when one of the two is a fine-tune of the "
        "other (positive when the fine-tune does better, whichever of A and B it is), else B - A.",
    )
    dataset_id: str = Field(
        min_length=1, max_length=64, description="The processed dataset the samples come from."
    )
    split: Literal["test", "train"] = Field(
        default="test", description="The dataset split the samples come from."
    )
    suite: Suite = Field(
        description="How answers are scored: `classification` (accuracy, macro-F1, per-class "
        "precision and recall, confusion matrix), `extraction` (exact match, token F1), "
        "`summarisation` (ROUGE-1/2/L), `translation` (BLEU, chrF), `json` (parse rate, exact "
        "match, schema match), `conversation` (ROUGE-L), `perplexity` (no generation: "
        "exp of the mean loss over the answers' tokens), `vibe` (answers side by side, no "
        "metrics), `rewards` (the `graders` of a GRPO run score the answers: mean reward per "
        "grader and in total), `preference` (no generation: on a preference dataset's pairs, "
        "how often the model finds the chosen answer likelier than the rejected one), "
        "`tool_calls` (conversations with tools, asked up to their first answer that calls "
        "tools: right tools, arguments exact, arguments valid against the tools' schemas, and "
        "no call where the reference answers in words)."
    )
    max_samples: Integer = Field(
        default=200,
        ge=1,
        le=5000,
        description="Evaluate at most this many samples, drawn at random (with `seed`) when the "
        "split has more; they keep the split's order.",
    )
    seed: Integer = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Seeds the choice of samples and, when `temperature` > 0, the sampling.",
    )
    max_new_tokens: Integer = Field(
        default=256, ge=1, le=4096, description="Stop each answer after this many tokens."
    )
    temperature: Number = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="Randomness of the answers: 0 (the default) decodes greedily, so the same "
        "model always gives the same answer.",
    )
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="For the `json` suite: a JSON Schema every answer should satisfy (its "
        "`$schema` names the draft; the latest by default).",
    )
    automatic: StrictBool = Field(
        default=False,
        description="Queued by TuneForge itself as a finished training run's before/after check "
        "(lists and the model page say so); false for the evaluations people start.",
    )
    judge: JudgeSpec | None = Field(
        default=None,
        description="Also have a model behind an OpenAI-compatible API grade every answer from "
        "1 to 10 against its question and reference (`judge_score`, 0..1, per sample and as a "
        "mean); any suite but `perplexity`.",
    )

    graders: Graders | None = Field(
        default=None,
        description="For the `rewards` suite: the graders that score every answer (the same "
        "list as a GRPO run's `graders`); they read the row's columns, and in a conversation "
        "dataset the column `answer` holds the conversation's last answer.",
    )
    length_normalized: StrictBool = Field(
        default=True,
        description="For the `preference` suite: compare the mean log-probability per token of "
        "the chosen and the rejected answer (true: a longer answer is not penalised for its "
        "length) rather than their summed log-probabilities (false).",
    )

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            from tuneforge.evaluation.metrics.json_output import schema_validator

            schema_validator(schema)  # raises ValueError, with the reason, for an invalid schema
        return schema

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationSpec:
        if self.json_schema is not None and self.suite != "json":
            raise ValueError("json_schema applies to the json suite only")
        if self.compare_with == self.model:
            raise ValueError("compare_with must name a different model than model")
        if self.judge is not None and self.suite in NO_ANSWERS:
            raise ValueError(f"a judge grades answers: the {self.suite} suite generates none")
        if (self.graders is not None) != (self.suite == "rewards"):
            raise ValueError("the rewards suite needs `graders`, and only it takes them")
        return self

    def judges(self) -> list[JudgeSpec]:
        """Every judge the evaluation calls: its own `judge` and the judge graders'."""
        graders = [g.judge_spec() for g in self.graders or [] if isinstance(g, JudgeGrader)]
        return [self.judge, *graders] if self.judge is not None else graders

    @property
    def model_ids(self) -> list[str]:
        """The evaluated models, A then (when compared) B."""
        return [self.model] if self.compare_with is None else [self.model, self.compare_with]
