"""Prompt templates (defaults, validation, rendering) and the lenient reading of replies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.data.synthesis.templates import (
    FIELDS,
    MAX_TEMPLATE_CHARS,
    SHAPES,
    TASKS,
    check_template,
    parse_reply,
    render,
)
from tuneforge.errors import InvalidInput

GENERATOR = {"kind": "endpoint", "base_url": "http://127.0.0.1:1/v1", "model": "m"}


@pytest.mark.parametrize("task", TASKS)
def test_default_templates_are_valid_and_ask_for_the_task_fields_in_json(task: str) -> None:
    shape = SHAPES[task]  # type: ignore[index]
    assert check_template(shape.template) == shape.template
    for field in FIELDS:
        assert "{" + field + "}" in shape.template
    shown = render(shape.template, dict.fromkeys(FIELDS, "X"))
    assert "{text}" not in shown and "JSON" in shown
    assert f'"{shape.prompt_keys[0]}"' in shown and f'"{shape.answer_keys[0]}"' in shown


def test_user_templates_are_checked_with_clear_messages() -> None:
    with pytest.raises(InvalidInput, match=r"unknown field\(s\) \{chunk\}.*\{text\}"):
        check_template("Questions about {chunk}")
    with pytest.raises(InvalidInput, match=r"must contain \{text\}"):
        check_template("Write {count} questions about {document}.")
    with pytest.raises(InvalidInput, match="at most 8,000"):
        check_template("{text}" + "x" * MAX_TEMPLATE_CHARS)
    assert check_template('Use {text}; reply [{"question": "..."}]').startswith("Use")
    with pytest.raises(ValidationError, match="unknown field"):
        SynthesisSpec(generator=GENERATOR, template="About {txt}")  # type: ignore[arg-type]
    spec = SynthesisSpec(generator=GENERATOR, template="  ")  # type: ignore[arg-type]
    assert spec.template is None


def test_render_fills_known_fields_and_keeps_other_braces() -> None:
    out = render('{text} / {count} / {"question": 1} / {other}', {"text": "T", "count": "3"})
    assert out == 'T / 3 / {"question": 1} / {other}'
    # a value holding braces is not filled in again
    assert render("{text}{count}", {"text": "{count}", "count": "2"}) == "{count}2"


@pytest.mark.parametrize(
    "reply",
    [
        '[{"question": "What is X?", "answer": "A pump."}]',
        'Sure! Here are the pairs:\n```json\n[{"question": "What is X?", "answer": "A pump."}]\n```'
        "\nI hope this helps.",
        '{"question": "What is X?", "answer": "A pump."}',
        '{"pairs": [{"Question": "What is X?", "ANSWER": "A pump."}]}',
        '{"q": "What is X?", "a": "  A pump.  "}',
    ],
)
def test_messy_replies_give_their_pair(reply: str) -> None:
    parsed = parse_reply(reply, "qa")
    assert parsed.pairs == [("What is X?", "A pump.")]
    assert parsed.unusable == 0 and parsed.found_json


def test_objects_one_per_line_and_a_broken_list_are_read_object_by_object() -> None:
    lines = '{"question": "A?", "answer": "a"}\n{"question": "B?", "answer": "b"}'
    assert parse_reply(lines, "qa").pairs == [("A?", "a"), ("B?", "b")]
    cut = '[{"question": "A?", "answer": "a"}, {"question": "B?", "answer": "b"}, {"question": "C'
    assert parse_reply(cut, "qa").pairs == [("A?", "a"), ("B?", "b")]


def test_unusable_objects_are_counted_and_prose_is_not_json() -> None:
    parsed = parse_reply(
        '[{"question": "A?", "answer": "a"}, {"question": "B?"}, {"question": "", "answer": "c"},'
        ' {"question": true, "answer": "d"}, "just a string", 7]',
        "qa",
    )
    assert parsed.pairs == [("A?", "a")] and parsed.unusable == 3
    none = parse_reply("I am sorry, I cannot write questions about [1] this.", "qa")
    assert none.pairs == [] and not none.found_json
    empty = parse_reply('{"note": "nothing here"}', "qa")
    assert empty.pairs == [] and empty.unusable == 1 and empty.found_json


def test_each_task_reads_its_own_keys() -> None:
    instructions = parse_reply(
        '[{"instruction": "List the parts.", "response": "A, B"}]', "instructions"
    )
    assert instructions.pairs == [("List the parts.", "A, B")]
    summaries = parse_reply('[{"instruction": "Summarise it.", "summary": "It is."}]', "summaries")
    assert summaries.pairs == [("Summarise it.", "It is.")]
    reasoning = parse_reply(
        '[{"question": "How many?", "reasoning": ["2 pumps", "3 each"], "answer": "6"}]',
        "reasoning",
    )
    assert reasoning.pairs == [("How many?", "2 pumps\n3 each\n\nAnswer: 6")]
    # a qa reply written with the instruction's keys is not taken for a question
    assert parse_reply('[{"instruction": "Do", "output": "done"}]', "qa").pairs == []
