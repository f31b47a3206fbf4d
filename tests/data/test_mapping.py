"""Every recognised format is detected and mapped to conversations with no user input; custom
columns get a best guess; every problem in a row is reported, not just the first."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

from tuneforge.data.formats import guess_mapping
from tuneforge.data.mapping import FieldSource, MappingSpec, RowMapper
from tuneforge.data.templates import parse_template
from tuneforge.errors import InvalidInput


def text(role: str, value: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": value}]}


EXPECTED = [text("system", "Be brief."), text("user", "Hi?"), text("assistant", "Hello.")]

CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "openai",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi?"},
                {"role": "assistant", "content": "Hello."},
            ]
        },
        "messages",
        {"messages": EXPECTED},
    ),
    (
        "openai parts",
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "text", "text": "Hi?"}]},
                {"role": "assistant", "content": "Hello."},
            ]
        },
        "messages",
        {"messages": EXPECTED},
    ),
    (
        "sharegpt",
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi?"},
                {"from": "gpt", "value": "Hello."},
            ]
        },
        "sharegpt",
        {"messages": EXPECTED},
    ),
    (
        "alpaca",
        {"instruction": "Hi?", "input": "", "output": "Hello.", "system": "Be brief."},
        "alpaca",
        {"messages": EXPECTED},
    ),
    (
        "alpaca input+history",
        {"instruction": "Translate", "input": "chat", "output": "cat", "history": [["One?", "1"]]},
        "alpaca",
        {
            "messages": [
                text("user", "One?"),
                text("assistant", "1"),
                text("user", "Translate\n\nchat"),
                text("assistant", "cat"),
            ]
        },
    ),
    (
        "prompt/completion",
        {"prompt": "Hi?", "completion": "Hello.", "system": "Be brief."},
        "prompt_completion",
        {"messages": EXPECTED},
    ),
    (
        "question/answer",
        {"question": "Hi?", "answer": "Hello."},
        "question_answer",
        {"messages": EXPECTED[1:]},
    ),
    (
        "preference",
        {"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."},
        "preference",
        {
            "prompt": [text("user", "Hi?")],
            "chosen": [text("assistant", "Hello.")],
            "rejected": [text("assistant", "Go away.")],
        },
    ),
    (
        "preference conversational",
        {
            "prompt": [{"role": "user", "content": "Hi?"}],
            "chosen": [{"role": "assistant", "content": "Hello."}],
            "rejected": [{"role": "assistant", "content": "No."}],
        },
        "preference",
        {
            "prompt": [text("user", "Hi?")],
            "chosen": [text("assistant", "Hello.")],
            "rejected": [text("assistant", "No.")],
        },
    ),
    ("text", {"text": "Once upon a time."}, "text", {"text": "Once upon a time."}),
    (
        "prompt only",
        {"prompt": "Solve 2+2", "solution": "4"},
        "prompt_only",
        {"prompt": [text("user", "Solve 2+2")], "solution": "4"},
    ),
]


@pytest.mark.parametrize(("name", "row", "fmt", "record"), CASES, ids=[c[0] for c in CASES])
def test_recognised_formats_map_without_input(name, row, fmt, record) -> None:
    guess = guess_mapping(list(row), [row])
    assert guess.format == fmt and guess.sure and guess.mapping is not None
    result = RowMapper(guess.mapping, list(row)).map(row)
    assert result.problems == []
    assert result.record == record


def test_unknown_columns_get_a_best_guess() -> None:
    row = {"review": "Great film", "sentiment": "positive", "id": 7}
    guess = guess_mapping(list(row), [row])
    assert not guess.sure and guess.mapping is not None
    assert guess.mapping.user == FieldSource(column="review")
    assert guess.mapping.assistant == FieldSource(column="sentiment")


def test_templates_build_turns_and_refuse_anything_but_names() -> None:
    spec = MappingSpec(
        user=FieldSource(template="Classify: {review}"),
        assistant=FieldSource(column="label"),
        system_prompt="Answer in one word.",
    )
    result = RowMapper(spec, ["review", "label"]).map({"review": "Dull.", "label": "negative"})
    assert result.record == {
        "messages": [
            text("system", "Answer in one word."),
            text("user", "Classify: Dull."),
            text("assistant", "negative"),
        ]
    }
    for bad in ("{nope}", "{review.__class__}", "{review[0]}", "{review!r}", "{review:>10}", "{"):
        with pytest.raises(InvalidInput):
            parse_template(bad, ["review"])
    assert (
        parse_template("{{literal}} {review}", ["review"]).render({"review": "x"}) == "{literal} x"
    )


def test_every_problem_of_a_row_is_reported() -> None:
    spec = MappingSpec(layout="messages", messages_column="messages")
    mapper = RowMapper(spec, ["messages"])
    bad = mapper.map(
        {
            "messages": [
                {"role": "assistant", "content": "first"},
                {"role": "wizard", "content": "?"},
                {"role": "user", "content": {"x": 1}},
            ]
        }
    )
    codes = {code for code, _ in bad.problems}
    assert bad.record is None
    assert {"unknown_role", "non_text", "role_order"} <= codes
    empty = mapper.map(
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}
    )
    assert empty.record is None and {c for c, _ in empty.problems} >= {
        "empty_field",
        "empty_assistant",
    }
    missing = RowMapper(
        MappingSpec(user=FieldSource(column="q"), assistant=FieldSource(column="a")), ["q", "a"]
    ).map({"q": None, "a": "x"})
    assert ("missing_field", "user (q) is missing") in missing.problems


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_come_from_the_zip_or_base64_never_urls() -> None:
    spec = MappingSpec(
        user=FieldSource(column="q"), assistant=FieldSource(column="a"), image_column="image"
    )
    files = {
        "img/cat.png": png(),
        "img/broken.png": png()[:40],
        "img/note.png": b"PNG... not one",
    }
    mapper = RowMapper(spec, ["q", "a", "image"], images=files.get)
    from_zip = mapper.map({"q": "What?", "a": "A cat.", "image": "img/cat.png"})
    assert from_zip.record is not None and from_zip.record["images"] == [png()]
    assert from_zip.record["messages"][0]["content"][0] == {"type": "image"}
    b64 = mapper.map({"q": "What?", "a": "A cat.", "image": base64.b64encode(png()).decode()})
    assert b64.record is not None and b64.record["images"] == [png()]
    broken = mapper.map({"q": "What?", "a": "A cat.", "image": "img/broken.png"})
    assert broken.record is None and broken.problems[0][0] == "image_undecodable"
    other = mapper.map({"q": "What?", "a": "A cat.", "image": "img/note.png"})
    assert other.record is None and other.problems[0][0] == "image_type"
    url = mapper.map({"q": "What?", "a": "A cat.", "image": "https://example.com/cat.png"})
    assert url.record is None and url.problems[0][0] == "image_url"


def test_a_mapping_must_be_complete() -> None:
    with pytest.raises(ValueError, match="needs chosen, rejected"):
        MappingSpec(mode="preference", user=FieldSource(column="p"))
    with pytest.raises(ValueError, match="either a column or a template"):
        FieldSource()
    with pytest.raises(InvalidInput, match="does not exist"):
        RowMapper(
            MappingSpec(user=FieldSource(column="q"), assistant=FieldSource(column="zz")), ["q"]
        )
