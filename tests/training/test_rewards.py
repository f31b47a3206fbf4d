"""The reward graders against hand-computed rewards: each grader type's scores and reasons, edge
cases (missing references, invalid per-row schemas, odd numbers), weights and totals, a hostile
regular expression that finishes at once, and the judge grader through a real OpenAI-shaped
server on loopback."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from tests.evaluation.judge_server import judge_server
from tuneforge.errors import InvalidInput
from tuneforge.evaluation.judge import JudgeFailed
from tuneforge.training.rewards.grade import GraderSet
from tuneforge.training.rewards.numbers import last_number
from tuneforge.training.rewards.spec import GRADERS, library

KEY = "sk-judge-0123456789-secret"


def grade(spec: dict[str, Any], completion: str, row: dict[str, Any] | None = None) -> float:
    """One grader's score of one completion."""
    with GraderSet(GRADERS.validate_python([spec])) as graders:
        (scores,) = graders.score([completion], [row or {}])
    return next(iter(scores.grades.values()))


def reason(spec: dict[str, Any], completion: str, row: dict[str, Any] | None = None) -> str:
    with GraderSet(GRADERS.validate_python([spec])) as graders:
        (scores,) = graders.score([completion], [row or {}])
    return next(iter(scores.reasons.values()))


@pytest.mark.parametrize(
    ("completion", "reference", "normalize", "expected"),
    [
        ("Paris", "Paris", True, 1.0),
        ("  paris \n", "Paris", True, 1.0),
        ("New   York", "new york", True, 1.0),
        ("paris", "Paris", False, 0.0),
        ("Paris.", "Paris", True, 0.0),
        ("Rome", ["Roma", "Rome"], True, 1.0),  # any of several accepted answers
        ("42", 42, True, 1.0),  # a number reference compares as its text
    ],
)
def test_exact_match(completion: str, reference: Any, normalize: bool, expected: float) -> None:
    spec = {"type": "exact_match", "column": "answer", "normalize": normalize}
    assert grade(spec, completion, {"answer": reference}) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The answer is 42.", 42.0),
        ("It costs 1,234.5 dollars", 1234.5),
        ("it fell to -3", -3.0),
        ("\u22127 degrees", -7.0),
        ("about 1e3 of them", 1000.0),
        ("3/4 of the cake", 0.75),
        ("first 5, then 7", 7.0),
        ("50%", 50.0),
        ("H2O and x2", None),  # digits glued to letters are no numbers
        ("1/0", None),
        ("no number", None),
        ("#### 72", 72.0),
    ],
)
def test_numbers_are_read_sensibly(text: str, value: float | None) -> None:
    assert last_number(text) == value


@pytest.mark.parametrize(
    ("spec", "completion", "reference", "expected"),
    [
        ({}, "So 6 * 7 = 42", "42", 1.0),
        ({}, "So 6 * 7 = 42", 42, 1.0),
        ({}, "It is 41", "42", 0.0),
        ({}, "The total is 1,000", "1000", 1.0),
        ({}, "half: 1/2", 0.5, 1.0),
        ({}, "Natalia sold 72 clips", "48 + 24 = 72\n#### 72", 1.0),
        ({"tolerance": 0.5}, "about 42.4", "42", 1.0),
        ({"tolerance": 0.5}, "about 42.6", "42", 0.0),
        ({"relative_tolerance": 0.01}, "990", "1000", 1.0),
        ({"relative_tolerance": 0.01}, "989", "1000", 0.0),
        ({"extract": "tag", "tag": "answer"}, "7 steps <answer>42</answer> 3", "42", 1.0),
        ({"extract": "tag", "tag": "answer"}, "7 steps, answer 42", "42", 0.0),
        ({"extract": "tag", "tag": "answer"}, "<ANSWER> 42 apples </Answer>", "42", 1.0),
        ({}, "no number here", "42", 0.0),
        ({}, "42", "forty-two", 0.0),  # a reference without a number
    ],
)
def test_numeric_match(spec: dict, completion: str, reference: Any, expected: float) -> None:
    full = {"type": "numeric_match", "column": "answer", **spec}
    assert grade(full, completion, {"answer": reference}) == expected


def test_numeric_match_says_why() -> None:
    spec = {"type": "numeric_match", "column": "answer"}
    assert reason(spec, "so 42", {"answer": "42"}) == "found 42, reference 42: match"
    assert reason(spec, "so 41.5", {"answer": 42}) == "found 41.5, reference 42: no match"
    tagged = {**spec, "extract": "tag", "tag": "answer"}
    assert reason(tagged, "42", {"answer": 42}) == "no <answer>...</answer> in the completion"
    assert reason(spec, "42", {}) == "the row has no value in the column 'answer'"
    with pytest.raises(ValidationError, match="needs the tag"):
        GRADERS.validate_python([{**spec, "extract": "tag"}])


@pytest.mark.parametrize(
    ("spec", "completion", "expected"),
    [
        ({"pattern": r"\d+"}, "it is 42", 1.0),
        ({"pattern": r"\d+"}, "it is none", 0.0),
        ({"pattern": r"\d+", "mode": "fullmatch"}, "it is 42", 0.0),
        ({"pattern": r"<answer>\d+</answer>", "mode": "fullmatch"}, " <answer>42</answer>\n", 1.0),
        ({"pattern": "(?s)<think>.+</think>", "mode": "fullmatch"}, "<think>a\nb</think>", 1.0),
        ({"pattern": "<think>.+</think>", "mode": "fullmatch"}, "<think>a\nb</think>", 0.0),
        ({"pattern": "yes"}, "YES", 0.0),
        ({"pattern": "yes", "ignore_case": True}, "YES", 1.0),
        ({"pattern": "end", "max_chars": 10}, "0123456789 end", 0.0),  # beyond what it reads
    ],
)
def test_regex(spec: dict, completion: str, expected: float) -> None:
    assert grade({"type": "regex", **spec}, completion) == expected


def test_regex_refuses_what_re2_cannot_match_in_linear_time() -> None:
    for pattern, why in [(r"(a)\1", "backreferences"), (r"(?=a)b", "lookarounds"), ("(", "")]:
        with pytest.raises(ValidationError, match="RE2 cannot use this pattern") as refused:
            GRADERS.validate_python([{"type": "regex", "pattern": pattern}])
        assert why in str(refused.value)


@pytest.mark.timeout(30)
def test_a_hostile_regex_on_100_kb_finishes_at_once() -> None:
    text = "a" * 99_999 + "!"  # 100 kB: Python's re would backtrack for ages
    for mode in ("search", "fullmatch"):
        spec = {"type": "regex", "pattern": "(a+)+$", "mode": mode, "max_chars": 100_000}
        started = time.perf_counter()
        assert grade(spec, text) == 0.0
        assert time.perf_counter() - started < 0.5
    spec = {"type": "regex", "pattern": "(a|aa)+b", "max_chars": 100_000}
    started = time.perf_counter()
    assert grade(spec, "a" * 100_000) == 0.0
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("completion", "whole", "expected"),
    [
        ('{"a": 1}', False, 1.0),
        ('```json\n{"a": 1}\n```', True, 1.0),
        ('Here it is:\n```json\n{"a": 1}\n```\nDone.', False, 1.0),
        ('Here it is:\n```json\n{"a": 1}\n```\nDone.', True, 0.0),
        ('Sure! {"a": [1, 2]} is the answer', False, 1.0),
        ("First {broken}, then [1, 2]", False, 1.0),
        ('{"a": NaN}', False, 0.0),
        ("{'a': 1}", False, 0.0),  # Python, not JSON
        ("no JSON at all", False, 0.0),
        ("[" * 100_000, False, 0.0),  # too deep to read: no crash
    ],
)
def test_json_valid(completion: str, whole: bool, expected: float) -> None:
    assert grade({"type": "json_valid", "whole": whole}, completion) == expected


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def test_json_schema_inline() -> None:
    spec = {"type": "json_schema", "schema": PERSON}
    assert grade(spec, '{"name": "Ada", "age": 36}') == 1.0
    assert grade(spec, 'Result: ```json\n{"name": "Ada", "age": 36}\n```') == 1.0
    assert grade(spec, '{"name": "Ada", "age": "36"}') == 0.0
    assert grade(spec, '{"name": "Ada"}') == 0.0
    assert grade(spec, "no json") == 0.0
    assert "at age: '36' is not of type 'integer'" in reason(spec, '{"name": "A", "age": "36"}')
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        GRADERS.validate_python([{"type": "json_schema", "schema": {"type": "thing"}}])
    with pytest.raises(ValidationError, match="either `schema`"):
        GRADERS.validate_python([{"type": "json_schema", "schema": PERSON, "column": "schema"}])
    assert GRADERS.dump_python(GRADERS.validate_python([spec]))[0]["schema"] == PERSON


def test_json_schema_per_row() -> None:
    spec = {"type": "json_schema", "column": "schema"}
    completion = '{"name": "Ada", "age": 36}'
    assert grade(spec, completion, {"schema": PERSON}) == 1.0
    assert grade(spec, completion, {"schema": '{"type": "array"}'}) == 0.0  # as JSON text
    # A row's problem scores 0 with the reason; it never stops the others.
    assert grade(spec, completion, {}) == 0.0
    assert "no JSON Schema object" in reason(spec, completion, {})
    assert "is not JSON" in reason(spec, completion, {"schema": "{not json"})
    assert "not a valid JSON Schema" in reason(spec, completion, {"schema": {"type": 5}})


@pytest.mark.parametrize(
    ("spec", "completion", "expected"),
    [
        ({"minimum": 4, "maximum": 8}, "one two three four", 1.0),
        ({"minimum": 4, "maximum": 8}, "one two three", 0.75),  # 3 / 4
        ({"minimum": 4, "maximum": 8}, "", 0.0),
        ({"minimum": 4, "maximum": 8}, " ".join(["w"] * 10), 0.75),  # 1 - 2 / 8
        ({"minimum": 4, "maximum": 8}, " ".join(["w"] * 16), 0.0),  # twice the maximum
        ({"minimum": 4, "maximum": 8}, " ".join(["w"] * 30), 0.0),
        ({"maximum": 5, "unit": "chars"}, "abcde", 1.0),
        ({"maximum": 5, "unit": "chars"}, "  abcdefg  ", 0.6),  # 7 chars: 1 - 2 / 5
        ({"minimum": 2}, " ".join(["w"] * 500), 1.0),  # no upper bound
    ],
)
def test_length(spec: dict, completion: str, expected: float) -> None:
    assert grade({"type": "length", **spec}, completion) == pytest.approx(expected)


def test_length_needs_a_window() -> None:
    with pytest.raises(ValidationError, match="give `minimum`, `maximum` or both"):
        GRADERS.validate_python([{"type": "length"}])
    with pytest.raises(ValidationError, match="minimum \\(9\\) is above maximum \\(3\\)"):
        GRADERS.validate_python([{"type": "length", "minimum": 9, "maximum": 3}])


@pytest.mark.parametrize(
    ("spec", "completion", "expected"),
    [
        ({"required": ["because", "so"]}, "It works because of this, so yes", 1.0),
        ({"required": ["because", "so"]}, "It works because of this", 0.5),
        ({"forbidden": ["As an AI"]}, "as an ai, I cannot", 0.0),
        ({"forbidden": ["As an AI"], "ignore_case": False}, "as an ai, I cannot", 1.0),
        ({"required": ["Because"], "forbidden": ["sorry", "cannot"]}, "Sorry, because", 2 / 3),
        ({"required": ["x"], "forbidden": ["y"]}, "", 0.5),
    ],
)
def test_phrases(spec: dict, completion: str, expected: float) -> None:
    assert grade({"type": "phrases", **spec}, completion) == pytest.approx(expected)


def test_phrases_say_which() -> None:
    spec = {"type": "phrases", "required": ["because"], "forbidden": ["sorry"]}
    assert reason(spec, "Sorry.") == "kept 0 of 2: missing 'because', contains 'sorry'"
    with pytest.raises(ValidationError, match="at least one"):
        GRADERS.validate_python([{"type": "phrases"}])


def test_weights_totals_names_and_columns() -> None:
    specs = GRADERS.validate_python(
        [
            {"type": "numeric_match", "column": "answer", "weight": 2.0},
            {"type": "regex", "name": "format", "pattern": r"^\d+$", "mode": "fullmatch"},
            {"type": "length", "maximum": 1, "weight": 0.5},
            {"type": "json_schema", "column": "schema", "weight": 0.0},
        ]
    )
    assert [spec.name for spec in specs] == ["numeric_match", "format", "length", "json_schema"]
    graders = GraderSet(specs)
    assert graders.columns() == {"answer", "schema"}
    assert graders.judges() == []
    rows = [{"answer": "12"}, {"answer": "12"}, {"answer": "12"}]
    scores = graders.score(["12", "the answer is 12", "13 or 14"], rows)
    assert [s.grades["numeric_match"] for s in scores] == [1.0, 1.0, 0.0]
    assert [s.grades["format"] for s in scores] == [1.0, 0.0, 0.0]
    # "the answer is 12": 4 words against a maximum of 1 -> 0; "13 or 14": 3 words -> 0.
    assert [s.grades["length"] for s in scores] == [1.0, 0.0, 0.0]
    assert [s.total for s in scores] == [2.0 + 1.0 + 0.5, 2.0, 0.0]
    assert all(0.0 <= g <= 1.0 for s in scores for g in s.grades.values())
    with pytest.raises(ValidationError, match="two graders are named 'format'"):
        GRADERS.validate_python([{"type": "json_valid", "name": "format"}, specs[1]])
    for bad in ({"weight": -1.0}, {"weight": 11.0}, {"name": "a/b"}):
        with pytest.raises(ValidationError):
            GRADERS.validate_python([{"type": "json_valid", **bad}])
    with pytest.raises(ValidationError):
        GRADERS.validate_python([])


def test_the_library_explains_every_type_with_a_valid_example() -> None:
    entries = library()
    assert [e["type"] for e in entries] == [
        "exact_match",
        "numeric_match",
        "regex",
        "json_valid",
        "json_schema",
        "length",
        "phrases",
        "judge",
    ]
    for entry in entries:
        assert entry["title"] and len(entry["explanation"]) > 80
        assert GRADERS.validate_python([entry["example"]])[0].type == entry["type"]
        fields = entry["schema"]["properties"]
        assert all(field.get("description") for name, field in fields.items() if name != "type")


def judge_spec(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "judge",
        "base_url": url,
        "model": "grader",
        "api_key_secret": "JUDGE_KEY",
        "rubric": "Name the right city.",
        **extra,
    }


@pytest.mark.timeout(60)
def test_the_judge_grader_through_an_openai_compatible_server() -> None:
    with judge_server(KEY) as server:
        specs = GRADERS.validate_python(
            [judge_spec(server.url, column="city"), {"type": "exact_match", "column": "city"}]
        )
        graders = GraderSet(specs, secrets={"JUDGE_KEY": KEY})
        assert graders.columns() == {"city"}
        (judge,) = graders.judges()
        assert (judge.base_url, judge.model, judge.api_key_secret) == (
            server.url,
            "grader",
            "JUDGE_KEY",
        )
        rows = [
            {
                "prompt": [{"role": "user", "content": [{"type": "text", "text": "France?"}]}],
                "city": "Paris",
            },
            {
                "prompt": [{"role": "user", "content": [{"type": "text", "text": "Italy?"}]}],
                "city": "Rome",
            },
            {"prompt": [{"role": "user", "content": [{"type": "text", "text": "Spain?"}]}]},
        ]
        with graders:
            scores = graders.score(["It is Paris.", "Milan", "Madrid"], rows)
        # The fake judge gives 10 (1.0) when the answer holds the reference, else 1 (0.0).
        assert [s.grades["judge"] for s in scores] == [1.0, 0.0, 0.0]
        assert scores[0].reasons["judge"] == "the judge gave 10/10: has the reference"
        assert scores[2].reasons["judge"] == "the row has no value in the column 'city'"
        assert [s.total for s in scores] == [1.0, 0.0, 0.0]
        assert len(server.requests) == 2  # the row without a reference costs no request
        assert {r["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
        assert all("Name the right city." in r["messages"][0]["content"] for r in server.requests)
        # The judge's requests go out together, in no set order.
        questions = sorted(r["messages"][1]["content"] for r in server.requests)
        assert "Question:\nFrance?" in questions[0] and "Question:\nItaly?" in questions[1]

        with pytest.raises(InvalidInput, match="needs the secret JUDGE_KEY"):
            GraderSet(GRADERS.validate_python([judge_spec(server.url)])).score(["x"], [{}])
        with (
            GraderSet(
                GRADERS.validate_python([judge_spec(server.url)]), secrets={"JUDGE_KEY": "sk-wrong"}
            ) as refused,
            pytest.raises(JudgeFailed, match="refused the key"),
        ):
            refused.score(["x"], [{}])
        with GraderSet(
            GRADERS.validate_python([judge_spec(server.url, model="chatty")]),
            secrets={"JUDGE_KEY": KEY},
        ) as chatty:
            (unreadable,) = chatty.score(["x"], [{}])
        assert unreadable.grades == {"judge": 0.0}
        assert "no score" in unreadable.reasons["judge"]
