"""The graders that TuneForge scores itself, without calling anything: each spec becomes a rule,
a function from a completion and its dataset row to a `Grade` (a score in [0, 1] and the reason
for it, in words a person reads when trying a grader). What a rule needs once (a compiled
pattern, a schema's validator) is prepared when it is built, not for every completion.

A row's problem (a missing reference, an invalid per-row schema) scores 0 with the reason; it
never stops the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuneforge.evaluation.metrics.json_output import schema_validator
from tuneforge.training.rewards.json_find import find_json
from tuneforge.training.rewards.numbers import last_number, reference_number, shown, tagged
from tuneforge.training.rewards.spec import (
    ExactMatch,
    GraderBase,
    JsonSchema,
    JsonValid,
    Length,
    NumericMatch,
    Phrases,
    Regex,
    compile_re2,
)

QUOTED = 60  # characters of a text a reason quotes


@dataclass(frozen=True)
class Grade:
    score: float  # in [0, 1]
    reason: str


Rule = Callable[[str, Mapping[str, Any]], Grade]


def quote(text: str) -> str:
    return repr(text if len(text) <= QUOTED else text[:QUOTED] + "...")


def missing(column: str) -> Grade:
    return Grade(0.0, f"the row has no value in the column {column!r}")


def _exact_match(spec: ExactMatch) -> Rule:
    def normal(text: str) -> str:
        return " ".join(text.split()).casefold() if spec.normalize else text

    def rule(completion: str, row: Mapping[str, Any]) -> Grade:
        reference = row.get(spec.column)
        if reference is None:
            return missing(spec.column)
        accepted = [str(r) for r in reference] if isinstance(reference, list) else [str(reference)]
        if normal(completion) in {normal(answer) for answer in accepted}:
            return Grade(1.0, "equals the reference")
        return Grade(0.0, f"differs from the reference {quote(accepted[0])}")

    return rule


def _numeric_match(spec: NumericMatch) -> Rule:
    def rule(completion: str, row: Mapping[str, Any]) -> Grade:
        if row.get(spec.column) is None:
            return missing(spec.column)
        expected = reference_number(row[spec.column])
        if expected is None:
            return Grade(0.0, f"the reference {quote(str(row[spec.column]))} holds no number")
        where = completion
        if spec.tag is not None:
            inside = tagged(completion, spec.tag)
            if inside is None:
                return Grade(0.0, f"no <{spec.tag}>...</{spec.tag}> in the completion")
            where = inside
        found = last_number(where)
        if found is None:
            return Grade(0.0, f"no number found, reference {shown(expected)}")
        close = math.isclose(
            found, expected, rel_tol=spec.relative_tolerance, abs_tol=spec.tolerance
        )
        verdict = "match" if close else "no match"
        return Grade(float(close), f"found {shown(found)}, reference {shown(expected)}: {verdict}")

    return rule


def _regex(spec: Regex) -> Rule:
    pattern = compile_re2(spec.pattern, ignore_case=spec.ignore_case)

    def rule(completion: str, row: Mapping[str, Any]) -> Grade:
        text = completion[: spec.max_chars]
        cut = (
            f" (its first {spec.max_chars} characters)" if len(completion) > spec.max_chars else ""
        )
        if spec.mode == "fullmatch":
            matched = pattern.fullmatch(text.strip()) is not None
            return Grade(float(matched), f"the completion{cut} {_does(matched)} match the pattern")
        matched = pattern.search(text) is not None
        return Grade(float(matched), f"the pattern {_does(matched)} occur in the completion{cut}")

    return rule


def _does(yes: bool) -> str:
    return "does" if yes else "does not"


def _json_valid(spec: JsonValid) -> Rule:
    def rule(completion: str, row: Mapping[str, Any]) -> Grade:
        found = find_json(completion, whole=spec.whole)
        return Grade(float(found.ok), found.reason)

    return rule


def _json_schema(spec: JsonSchema) -> Rule:
    fixed = schema_validator(spec.json_schema) if spec.json_schema is not None else None

    def row_validator(row: Mapping[str, Any]) -> Any:
        """The row's schema's validator; ValueError, with the reason, when it has none."""
        assert spec.column is not None  # the spec has a column when it has no schema
        schema = row.get(spec.column)
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError:
                raise ValueError(f"the row's schema in {spec.column!r} is not JSON") from None
        if not isinstance(schema, dict):
            raise ValueError(f"the row has no JSON Schema object in the column {spec.column!r}")
        return schema_validator(schema)

    def rule(completion: str, row: Mapping[str, Any]) -> Grade:
        try:
            validator = fixed if fixed is not None else row_validator(row)
        except ValueError as problem:
            return Grade(0.0, str(problem))
        found = find_json(completion, whole=spec.whole)
        if not found.ok:
            return Grade(0.0, found.reason)
        from jsonschema.exceptions import best_match

        error = best_match(validator.iter_errors(found.value))
        if error is None:
            return Grade(1.0, f"{found.reason}, and it satisfies the schema")
        where = "/".join(str(part) for part in error.absolute_path) or "the top level"
        return Grade(0.0, f"{found.reason}, but at {where}: {error.message[:200]}")

    return rule


def _length(spec: Length) -> Rule:
    def rule(completion: str, row: Mapping[str, Any]) -> Grade:
        size = len(completion.split()) if spec.unit == "words" else len(completion.strip())
        counted = f"{size} {spec.unit if spec.unit == 'words' else 'characters'}"
        if spec.minimum is not None and size < spec.minimum:
            score = size / spec.minimum
            return Grade(score, f"{counted}, under the minimum {spec.minimum}: {score:.2f}")
        if spec.maximum is not None and size > spec.maximum:
            score = max(0.0, 1 - (size - spec.maximum) / spec.maximum)
            return Grade(score, f"{counted}, over the maximum {spec.maximum}: {score:.2f}")
        return Grade(1.0, f"{counted}, inside the window")

    return rule


def _phrases(spec: Phrases) -> Rule:
    def fold(text: str) -> str:
        return text.casefold() if spec.ignore_case else text

    def rule(completion: str, row: Mapping[str, Any]) -> Grade:
        text = fold(completion)
        absent = [p for p in spec.required if fold(p) not in text]
        present = [p for p in spec.forbidden if fold(p) in text]
        rules = len(spec.required) + len(spec.forbidden)
        kept = rules - len(absent) - len(present)
        problems = [f"missing {quote(p)}" for p in absent] + [
            f"contains {quote(p)}" for p in present
        ]
        return Grade(
            kept / rules,
            f"kept {kept} of {rules}" + (f": {', '.join(problems)}" if problems else ""),
        )

    return rule


BUILDERS: dict[type[GraderBase], Callable[[Any], Rule]] = {
    ExactMatch: _exact_match,
    NumericMatch: _numeric_match,
    Regex: _regex,
    JsonValid: _json_valid,
    JsonSchema: _json_schema,
    Length: _length,
    Phrases: _phrases,
}
"""The rule of each grader type that is scored without a call (all but the judge)."""


def rule_for(spec: GraderBase) -> Rule:
    """The rule that scores `spec`'s grader."""
    return BUILDERS[type(spec)](spec)
