"""The json suite: whether answers parse as JSON, equal the reference's JSON and satisfy a JSON
Schema."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from tuneforge.evaluation.metrics.contract import (
    SuiteResult,
    check_pairs,
    mean,
    single_references,
)

_FENCE = re.compile(r"\A\s*```(?:json)?(.*?)```\s*\Z", re.DOTALL | re.IGNORECASE)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """The JSON value of `text`, after removing a ```json (or bare ```) fence around all of it.

    Only a fence that wraps the whole text is removed: prose before or after the JSON makes it
    unparseable, as it would be for a program reading the output. NaN and Infinity, which
    Python's json accepts but JSON does not, are rejected. Raises ValueError when it does not
    parse (also when it nests too deeply for Python's parser).
    """
    fenced = _FENCE.match(text)
    try:
        return json.loads(fenced.group(1) if fenced else text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def json_equal(left: Any, right: Any) -> bool:
    """Whether two parsed JSON values are the same: key order ignored, 1 == 1.0, but true != 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, (dict, list)) or isinstance(right, (dict, list)):
        return False
    return bool(left == right)


def _try_parse(text: str) -> tuple[bool, Any]:
    try:
        return True, parse_json(text)
    except ValueError:
        return False, None


def json_output(
    predictions: Sequence[str],
    references: Sequence[str],
    schema: dict[str, Any] | None = None,
) -> SuiteResult:
    """Whether outputs are JSON, equal to the reference's JSON, and valid against a schema.

    A reference that does not parse as JSON (for instance "" in a schema-only evaluation) is
    not compared with; `details["references_parsed"]` says how many did. The schema, if given,
    is a JSON Schema checked with `jsonschema` under the draft its `$schema` names (the latest
    by default); an invalid schema raises ValueError.

    metrics: `parse_rate` (fraction of predictions that parse, see `parse_json`),
    `exact_match` (fraction of the samples with a parsed reference whose prediction equals it,
    see `json_equal`; absent when no reference parses) and `schema_match_rate` (fraction of
    predictions that parse and are valid; only with a schema).
    per_sample: `parsed`; `exact_match` (only when the reference parses); `schema_valid` (only
    with a schema); `correct`, true when every one of those present is true; `score` (1.0 or 0.0).
    """
    check_pairs(predictions, references)
    validator = schema_validator(schema) if schema is not None else None
    per_sample: list[dict[str, float | bool]] = []
    for prediction, reference in zip(predictions, single_references(references), strict=True):
        parsed, value = _try_parse(prediction)
        sample: dict[str, float | bool] = {"parsed": parsed}
        has_reference, expected = _try_parse(reference)
        if has_reference:
            sample["exact_match"] = parsed and json_equal(value, expected)
        if validator is not None:
            sample["schema_valid"] = parsed and bool(validator.is_valid(value))
        correct = all(bool(flag) for flag in sample.values())
        per_sample.append({**sample, "correct": correct, "score": float(correct)})

    metrics = {"parse_rate": mean([float(sample["parsed"]) for sample in per_sample])}
    compared = [float(sample["exact_match"]) for sample in per_sample if "exact_match" in sample]
    if compared:
        metrics["exact_match"] = mean(compared)
    if validator is not None:
        metrics["schema_match_rate"] = mean([float(s["schema_valid"]) for s in per_sample])
    return SuiteResult(metrics, per_sample, {"references_parsed": len(compared)})


def schema_validator(schema: dict[str, Any]) -> Any:
    """A `jsonschema` validator of `schema` under the draft its `$schema` names (the latest by
    default); ValueError, with the reason, when the schema itself is not valid."""
    from jsonschema import exceptions, validators

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as error:
        raise ValueError(f"the schema is not a valid JSON Schema: {error.message}") from error
    return cls(schema)
