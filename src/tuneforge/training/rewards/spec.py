"""The grader specs: each kind of reward a GRPO run (or the `rewards` evaluation suite) can give a
completion, as a typed Pydantic model whose fields carry their descriptions, bounds and defaults.

`GraderSpec` is the union of them all, told apart by `type`; `Graders` is a list of them with
distinct names, as a training spec or an evaluation spec holds it. Every grader scores a
completion in [0, 1]; a set's total is the weighted sum of its graders' scores. The class
docstrings, titles and examples are the library the Train page shows (`library()`).

Light on purpose: the web process validates these specs. A `regex` pattern is compiled with RE2
(`re2`), which matches in time linear in the text, so no pattern can hang a worker; a
`json_schema` schema is checked with `jsonschema`, imported only then.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    model_validator,
)

from tuneforge.evaluation.judge import JudgeSpec
from tuneforge.strict_numbers import Integer, Number, OptionalInteger

MAX_GRADERS = 16
ANSWER_COLUMN = "answer"
"""The column that holds a conversation's last answer when graders score answers to a
conversation dataset's prompts (GRPO and the rewards suite alike)."""
MAX_CHARS = 20_000  # the most of a completion a regex grader reads, by default
NAME_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$"


def _reference_column() -> Any:
    return Field(
        min_length=1,
        max_length=200,
        description="The dataset column that holds each row's reference (the expected answer).",
    )


class GraderBase(BaseModel):
    """What every grader has: a name and a weight."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="",
        pattern=NAME_PATTERN,
        description="What charts and results call this grader (`reward/<name>`); unique within "
        "a set. Letters, digits, `_`, `.` and `-`. Empty: the grader's type, such as "
        "`numeric_match`.",
    )
    weight: Number = Field(
        default=1.0,
        ge=0.0,
        le=10.0,
        description="How much this grader counts: the total reward is the sum of each grader's "
        "score (0..1) times its weight.",
    )

    @model_validator(mode="after")
    def _default_name(self) -> GraderBase:
        if not self.name:
            self.name = str(getattr(self, "type"))  # noqa: B009 (every subclass has a type)
        return self

    def columns(self) -> set[str]:
        """The dataset columns this grader reads its references from."""
        column = getattr(self, "column", None)
        return {column} if column else set()


class ExactMatch(GraderBase):
    """Full reward when the completion is exactly the row's reference, else none. With
    `normalize`, both are compared after trimming, lower-casing and collapsing runs of spaces,
    so `  Paris ` matches `paris`."""

    model_config = ConfigDict(
        title="Exact match",
        json_schema_extra={"examples": [{"type": "exact_match", "column": "answer"}]},
    )

    type: Literal["exact_match"] = Field(
        default="exact_match", description="The grader: `exact_match`."
    )
    column: str = _reference_column()
    normalize: StrictBool = Field(
        default=True,
        description="Compare after trimming, lower-casing and collapsing runs of whitespace.",
    )


class NumericMatch(GraderBase):
    """Full reward when the number in the completion equals the row's reference number, within
    the tolerance. The number is the completion's last one, or the last one inside a tag such as
    `<answer>42</answer>`. Numbers may have thousands separators (`1,234.5`), a sign (`-3`), an
    exponent (`1e3`) or be a fraction (`3/4`); a reference in text (such as a worked solution
    ending in `#### 72`) counts by its last number."""

    model_config = ConfigDict(
        title="Numeric match",
        json_schema_extra={
            "examples": [
                {"type": "numeric_match", "column": "answer", "extract": "tag", "tag": "answer"}
            ]
        },
    )

    type: Literal["numeric_match"] = Field(
        default="numeric_match", description="The grader: `numeric_match`."
    )
    column: str = _reference_column()
    extract: Literal["last_number", "tag"] = Field(
        default="last_number",
        description="Where the completion's number is: `last_number` (its last number) or "
        "`tag` (the last number inside the last `<tag>...</tag>`).",
    )
    tag: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$",
        description="The tag that holds the answer when `extract` is `tag`: `answer` reads "
        "`<answer>42</answer>`.",
    )
    tolerance: Number = Field(
        default=0.0,
        ge=0.0,
        description="The largest absolute difference that still matches (0: equal numbers).",
    )
    relative_tolerance: Number = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="The largest difference that still matches, as a fraction of the "
        "reference (0.01: within 1%). A number matches when either tolerance allows it.",
    )

    @model_validator(mode="after")
    def _tag_given(self) -> NumericMatch:
        if self.extract == "tag" and self.tag is None:
            raise ValueError("extract `tag` needs the tag's name in `tag` (such as `answer`)")
        if self.extract != "tag" and self.tag is not None:
            raise ValueError("`tag` applies only when extract is `tag`")
        return self


def compile_re2(pattern: str, *, ignore_case: bool = False) -> Any:
    """`pattern` compiled by RE2; ValueError, with RE2's reason, when RE2 cannot use it."""
    import re2

    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0].decode() if isinstance(error.args[0], bytes) else str(error)
        raise ValueError(
            f"RE2 cannot use this pattern ({reason}); RE2 matches in linear time, so it has no "
            "backreferences nor lookarounds"
        ) from None


def _re2_pattern(pattern: str) -> str:
    compile_re2(pattern)
    return pattern


class Regex(GraderBase):
    """Full reward when the completion matches a regular expression (RE2 syntax: no
    backreferences nor lookarounds, and matching time linear in the text, so no pattern can
    hang training). `search` finds the pattern anywhere; `fullmatch` needs the whole completion
    to match, which is how a strict format is checked."""

    model_config = ConfigDict(
        title="Format (regular expression)",
        json_schema_extra={
            "examples": [
                {
                    "type": "regex",
                    "name": "format",
                    "pattern": r"(?s)<think>.+</think>\s*<answer>.+</answer>",
                    "mode": "fullmatch",
                }
            ]
        },
    )

    type: Literal["regex"] = Field(default="regex", description="The grader: `regex`.")
    pattern: Annotated[str, AfterValidator(_re2_pattern)] = Field(
        min_length=1,
        max_length=1000,
        description="The regular expression, in RE2 syntax (`(?s)` lets `.` match newlines).",
    )
    mode: Literal["search", "fullmatch"] = Field(
        default="search",
        description="`search`: the pattern occurs anywhere; `fullmatch`: the whole completion "
        "(surrounding whitespace trimmed) matches it.",
    )
    ignore_case: StrictBool = Field(default=False, description="Match letters in either case.")
    max_chars: Integer = Field(
        default=MAX_CHARS,
        ge=1,
        le=100_000,
        description="Match against at most the completion's first this many characters.",
    )


class JsonValid(GraderBase):
    """Full reward when the completion holds JSON that parses: the whole completion (a
    Markdown code fence around it allowed) or, unless `whole` is set, its first fenced code
    block or the first `{...}` or `[...]` in it."""

    model_config = ConfigDict(
        title="Valid JSON", json_schema_extra={"examples": [{"type": "json_valid", "whole": True}]}
    )

    type: Literal["json_valid"] = Field(
        default="json_valid", description="The grader: `json_valid`."
    )
    whole: StrictBool = Field(
        default=False,
        description="Only the whole completion counts (a code fence around it allowed), not "
        "JSON with text around it.",
    )


def _checked_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is not None:
        from tuneforge.evaluation.metrics.json_output import schema_validator

        schema_validator(schema)  # ValueError, with the reason, for an invalid schema
    return schema


class JsonSchema(GraderBase):
    """Full reward when the completion's JSON (found as for Valid JSON) satisfies a JSON
    Schema: one `schema` for every row, or each row's own schema in a `column` (an object or
    its JSON text). A row whose schema is missing or invalid scores 0 and says why."""

    model_config = ConfigDict(
        title="JSON Schema match",
        populate_by_name=True,
        serialize_by_alias=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "json_schema",
                    "schema": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                        "required": ["name", "age"],
                    },
                }
            ]
        },
    )

    type: Literal["json_schema"] = Field(
        default="json_schema", description="The grader: `json_schema`."
    )
    json_schema: Annotated[dict[str, Any] | None, AfterValidator(_checked_schema)] = Field(
        default=None,
        alias="schema",
        description="The JSON Schema every completion should satisfy (its `$schema` names the "
        "draft; the latest by default). Give this or `column`.",
    )
    column: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The dataset column holding each row's own JSON Schema. Give this or `schema`.",
    )
    whole: StrictBool = Field(
        default=False,
        description="Only the whole completion counts (a code fence around it allowed), not "
        "JSON with text around it.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> JsonSchema:
        if (self.json_schema is None) == (self.column is None):
            raise ValueError("give either `schema` (one for every row) or `column` (one per row)")
        return self


class Length(GraderBase):
    """Full reward when the completion's length, in words or characters, is inside the window
    [`minimum`, `maximum`]. Below the minimum the reward falls linearly to 0 for an empty
    completion (length / minimum); above the maximum it falls linearly to 0 at twice the
    maximum (1 - (length - maximum) / maximum)."""

    model_config = ConfigDict(
        title="Length window",
        json_schema_extra={
            "examples": [{"type": "length", "unit": "words", "minimum": 20, "maximum": 120}]
        },
    )

    type: Literal["length"] = Field(default="length", description="The grader: `length`.")
    unit: Literal["words", "chars"] = Field(
        default="words", description="Count words (separated by whitespace) or characters."
    )
    minimum: OptionalInteger = Field(
        default=None,
        ge=1,
        le=100_000,
        description="The shortest length with full reward; none: no lower bound.",
    )
    maximum: OptionalInteger = Field(
        default=None,
        ge=1,
        le=100_000,
        description="The longest length with full reward; none: no upper bound.",
    )

    @model_validator(mode="after")
    def _window(self) -> Length:
        if self.minimum is None and self.maximum is None:
            raise ValueError("give `minimum`, `maximum` or both")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) is above maximum ({self.maximum})")
        return self


Phrase = Annotated[str, Field(min_length=1, max_length=500)]


class Phrases(GraderBase):
    """The share of phrase rules the completion keeps: each `required` phrase it contains and
    each `forbidden` phrase it does not count as one kept rule. Two of three kept: 0.67."""

    model_config = ConfigDict(
        title="Required and forbidden phrases",
        json_schema_extra={
            "examples": [{"type": "phrases", "required": ["because"], "forbidden": ["As an AI"]}]
        },
    )

    type: Literal["phrases"] = Field(default="phrases", description="The grader: `phrases`.")
    required: list[Phrase] = Field(
        default_factory=list, max_length=50, description="Phrases the completion should contain."
    )
    forbidden: list[Phrase] = Field(
        default_factory=list,
        max_length=50,
        description="Phrases the completion should not contain.",
    )
    ignore_case: StrictBool = Field(default=True, description="Find phrases in either case.")

    @model_validator(mode="after")
    def _some_phrase(self) -> Phrases:
        if not self.required and not self.forbidden:
            raise ValueError("give at least one `required` or `forbidden` phrase")
        return self


class Judge(GraderBase, JudgeSpec):
    """A model behind any OpenAI-compatible API grades each completion from 1 to 10 against
    the `rubric` (and the row's reference, given a `column`); the grade maps to 0..1 as
    (n - 1) / 9. The key comes from one of your secrets, and the server's endpoint policy
    decides which addresses it may call. Each completion costs one request."""

    model_config = ConfigDict(
        title="LLM judge",
        json_schema_extra={
            "examples": [
                {
                    "type": "judge",
                    "base_url": "https://api.openai.com/v1",
                    "model": "gpt-4o-mini",
                    "api_key_secret": "OPENAI_API_KEY",
                    "rubric": "Reward answers that are polite, correct and under 50 words.",
                }
            ]
        },
    )

    type: Literal["judge"] = Field(default="judge", description="The grader: `judge`.")
    rubric: str = Field(  # type: ignore[assignment]  # required here, optional for evaluations
        min_length=1,
        max_length=4000,
        description="What the judge rewards: the grading instructions it is given.",
    )
    column: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A dataset column whose value the judge is shown as the reference answer; "
        "none: it judges the completion on its own merits.",
    )

    def judge_spec(self) -> JudgeSpec:
        """The endpoint this grader calls, as the judge client and the launch checks take it."""
        return JudgeSpec.model_validate(self.model_dump(include=set(JudgeSpec.model_fields)))


GraderSpec: TypeAlias = Annotated[
    ExactMatch | NumericMatch | Regex | JsonValid | JsonSchema | Length | Phrases | Judge,
    Field(discriminator="type"),
]
"""One grader; `type` says which."""


def _distinct_names(graders: list[GraderSpec]) -> list[GraderSpec]:
    seen: set[str] = set()
    for grader in graders:
        if grader.name in seen:
            raise ValueError(
                f"two graders are named {grader.name!r}: give each of them its own `name`"
            )
        seen.add(grader.name)
    return graders


Graders: TypeAlias = Annotated[
    list[GraderSpec],
    Field(min_length=1, max_length=MAX_GRADERS),
    AfterValidator(_distinct_names),
]
"""A set of graders with distinct names, as a spec holds it."""

GRADERS: TypeAdapter[list[GraderSpec]] = TypeAdapter(Graders)


def library() -> list[dict[str, Any]]:
    """Every grader type for the Train page's library: its `type`, `title`, `explanation` (one
    paragraph), an `example` spec and the JSON `schema` of its fields."""
    kinds = (ExactMatch, NumericMatch, Regex, JsonValid, JsonSchema, Length, Phrases, Judge)
    return [
        {
            "type": kind.model_fields["type"].default,
            "title": kind.model_config.get("title"),
            "explanation": " ".join((kind.__doc__ or "").split()),
            "example": kind.model_json_schema()["examples"][0],
            "schema": kind.model_json_schema(),
        }
        for kind in kinds
    ]
