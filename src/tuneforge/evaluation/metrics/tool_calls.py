"""The tool_calls suite: whether a model calls the right tools with the right arguments, and
keeps from calling when the reference answers in words.

Each sample's reference is an assistant turn of a conversation with tools (`ToolReference`): the
calls it makes, or none when it answers in text, and the tools the conversation declares. The
model's answer is read as Gemma writes calls (`tool_format.parse_calls`, the parser behind
`split_answer`): the text before the first call is not scored; a call text that does not parse
is a malformed call, which counts as calling (wrongly).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneforge.evaluation.metrics.contract import SuiteResult, check_pairs, mean
from tuneforge.evaluation.metrics.json_output import json_equal
from tuneforge.models.tool_format import (
    CallSyntaxError,
    ToolDefinition,
    ToolMarkers,
    arguments_of,
    parse_calls,
)

Call = Mapping[str, Any]
"""A call as parsed: `{"name": str, "arguments": {...}}`."""

CHECKS = ("tool_name", "arguments", "schema_valid")
"""The checks of a sample whose reference calls tools, in the order `failed` lists them."""


@dataclass(frozen=True)
class ToolReference:
    """What a sample's answer is scored against: the reference's calls (none: it answers in
    text) and the tools the prompt declares."""

    calls: Sequence[Call] = ()
    tools: Sequence[ToolDefinition] = field(default_factory=tuple)


def calls_of(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An assistant message's `tool_calls` as parsed calls (`{"name", "arguments"}`, the
    arguments as an object); ValueError for a call that is not well formed."""
    calls = []
    for call in message.get("tool_calls") or []:
        name, arguments = arguments_of(call)
        calls.append({"name": name, "arguments": dict(arguments)})
    return calls


def calls_text(calls: Sequence[Call]) -> str:
    """Calls as people read them: `get_weather({"city": "Oslo"})`, separated by `; `."""
    return "; ".join(
        f"{call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})" for call in calls
    )


def _same_arguments(predicted: Sequence[Call], expected: Sequence[Call]) -> bool:
    """Whether the calls pair up one to one, each with the same tool and equal arguments (as
    JSON values: key order ignored, 1 == 1.0, true != 1), in any order."""
    if len(predicted) != len(expected):
        return False
    left = list(expected)
    for call in predicted:
        match = next(
            (
                i
                for i, other in enumerate(left)
                if other["name"] == call["name"]
                and json_equal(other["arguments"], call["arguments"])
            ),
            None,
        )
        if match is None:
            return False
        left.pop(match)
    return True


def schema_problem(calls: Sequence[Call], tools: Sequence[ToolDefinition]) -> str:
    """Why the calls do not all name a declared tool with arguments its parameters' JSON schema
    accepts ("" when they do), by the dataset's own check (`data.tool_calls.check_calls`)."""
    from tuneforge.data.tool_calls import check_calls

    if not tools:
        names = ", ".join(repr(call["name"]) for call in calls)
        return f"a call to {names}, but the prompt declares no tools"
    turn: Any = {
        "role": "assistant",
        "content": [],
        "tool_calls": [
            {
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": json.dumps(call["arguments"], ensure_ascii=False),
                },
            }
            for call in calls
        ],
    }
    problems: list[tuple[str, str]] = []
    check_calls([turn], [dict(tool) for tool in tools], problems)
    return "; ".join(detail for _, detail in problems)


def _parsed(answer: str, markers: ToolMarkers) -> tuple[list[dict[str, Any]], str]:
    """The calls in `answer` and, when its call text does not parse, why (no calls then)."""
    try:
        return parse_calls(answer, markers)[1], ""
    except CallSyntaxError as error:
        return [], f"malformed call: {error}"


def tool_calls(
    predictions: Sequence[str], references: Sequence[ToolReference], markers: ToolMarkers
) -> SuiteResult:
    """Score answers that should call tools (the reference has calls) or should not.

    Where the reference calls tools:
    * `tool_name`: the answer calls the same tools, each as many times, in any order;
    * `arguments`: its calls pair up one to one with the reference's, each with the same tool
      and equal arguments as JSON values (key order ignored): so the call count matches too;
    * `schema_valid`: it calls, and every call names a tool the prompt declares with arguments
      that tool's JSON schema accepts (whatever the reference called).
    Where the reference answers in text: `no_call`, the answer calls nothing (a malformed call
    counts as a call).

    metrics: `tool_name_accuracy`, `arguments_exact`, `schema_valid` (each the share of the
    samples whose reference calls tools that pass the check; absent without such samples) and
    `no_call_when_none` (the share of the samples whose reference answers in text where the
    answer did not call either; absent without such samples). Each set of samples is fixed by
    the references, so two models' results have the same metrics.
    per_sample: `expects_call`, `called`, the checks above that apply, `correct` (every one of
    them passed), `score` (1.0 or 0.0), `calls` (the answer's calls, as `calls_text` writes
    them), `failed` (the checks that failed, comma-separated; "" when none) and `problem` (why
    the calls are malformed or break a schema; "" when nothing is wrong with them).
    details: `call_samples`, `text_samples`, `answers_with_calls` (answers that called,
    malformed ones included) and `malformed` (answers whose call text does not parse).
    """
    check_pairs(predictions, references)
    for index, reference in enumerate(references):
        if not isinstance(reference, ToolReference):
            raise TypeError(f"reference {index} is {type(reference).__name__}, not a ToolReference")
    per_sample: list[dict[str, float | bool | str]] = []
    unparsed = 0
    for answer, reference in zip(predictions, references, strict=True):
        calls, malformed = _parsed(answer, markers)
        unparsed += bool(malformed)
        called = bool(calls) or bool(malformed)
        problem = malformed or (schema_problem(calls, reference.tools) if calls else "")
        sample: dict[str, float | bool | str] = {
            "expects_call": bool(reference.calls),
            "called": called,
        }
        if reference.calls:
            expected = Counter(call["name"] for call in reference.calls)
            checks = {
                "tool_name": Counter(call["name"] for call in calls) == expected,
                "arguments": _same_arguments(calls, reference.calls),
                "schema_valid": bool(calls) and not problem,
            }
        else:
            checks = {"no_call": not called}
        correct = all(checks.values())
        failed = ", ".join(name for name, passed in checks.items() if not passed)
        sample.update(checks)
        sample.update(
            correct=correct,
            score=float(correct),
            calls=calls_text(calls),
            failed=failed,
            problem=problem,
        )
        per_sample.append(sample)

    expecting = [s for s in per_sample if s["expects_call"]]
    answering = [s for s in per_sample if not s["expects_call"]]
    metrics: dict[str, float] = {}
    if expecting:
        metrics["tool_name_accuracy"] = mean([float(s["tool_name"]) for s in expecting])
        metrics["arguments_exact"] = mean([float(s["arguments"]) for s in expecting])
        metrics["schema_valid"] = mean([float(s["schema_valid"]) for s in expecting])
    if answering:
        metrics["no_call_when_none"] = mean([float(s["no_call"]) for s in answering])
    details = {
        "call_samples": len(expecting),
        "text_samples": len(answering),
        "answers_with_calls": sum(bool(s["called"]) for s in per_sample),
        "malformed": unparsed,
    }
    return SuiteResult(metrics, per_sample, details)
