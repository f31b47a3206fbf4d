"""Augmentation in the library: seeded variants with lineage, the record's shape kept (roles,
system prompts, tool calls, image parts, control tokens), offline WordNet, and image methods."""

from __future__ import annotations

import io
import random
import socket
from pathlib import Path

import pytest
from PIL import Image

from tuneforge.data.augment import text_ops
from tuneforge.data.augment.images import augment_image
from tuneforge.data.augment.records import augment_records, variants_of
from tuneforge.data.augment.spec import (
    AugmentSpec,
    ColorMethod,
    CropMethod,
    FlipMethod,
    RotateMethod,
)
from tuneforge.data.augment.synonyms import WordNet, wordnet
from tuneforge.data.images import checked_image
from tuneforge.errors import InvalidInput

QUESTIONS = [
    "What is the quickest way to learn a new language as an adult?",
    "Explain why the sky looks blue on a clear day.",
    "Which large animals live in the cold northern forests?",
    "How should I store fresh bread so it stays good?",
    "Describe a simple method for planting tomato seeds indoors.",
    "Why do old bridges sometimes need heavy repairs?",
]


def _text(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _rows() -> list[dict]:
    return [
        {
            "messages": [
                _text("system", "You are a careful and friendly assistant."),
                _text("user", question),
                _text("assistant", f"Here is a short answer to question {i}."),
            ]
        }
        for i, question in enumerate(QUESTIONS)
    ]


ALL_TEXT = [{"name": n, "rate": 0.2} for n in ("synonym", "insert", "swap", "delete")]


def _spec(**overrides) -> AugmentSpec:
    return AugmentSpec.model_validate({"methods": ALL_TEXT, "copies": 2, "seed": 7} | overrides)


def test_the_same_seed_makes_the_same_rows_and_another_seed_others() -> None:
    first = augment_records(_rows(), _spec())
    assert first == augment_records(_rows(), _spec())
    assert first != augment_records(_rows(), _spec(seed=8))
    # Whatever the batching: each row is seeded by the seed and its position.
    batched = [v for i, row in enumerate(_rows()) for v in variants_of(row, i, _spec())]
    assert first[len(QUESTIONS) :] == batched


def test_every_new_row_names_its_source_and_methods_and_originals_come_first() -> None:
    rows = _rows()
    out = augment_records(rows, _spec())
    originals, variants = out[: len(rows)], out[len(rows) :]
    assert [{k: r[k] for k in ("messages",)} for r in originals] == rows
    assert all(r["augmented_from"] is None and r["augmentation"] is None for r in originals)
    assert len(variants) >= len(rows)  # 2 copies each, less the few that came out equal
    for variant in variants:
        source = rows[variant["augmented_from"]]
        assert variant["augmentation"] in {"synonym", "insert", "swap", "delete"}
        assert variant["messages"] != source["messages"]
        # Prompts only (the default): the system prompt and the answer are untouched.
        assert variant["messages"][0] == source["messages"][0]
        assert variant["messages"][2] == source["messages"][2]
        assert [m["role"] for m in variant["messages"]] == ["system", "user", "assistant"]


def test_combine_all_runs_every_method_and_answers_can_be_chosen() -> None:
    spec = _spec(combine="all", rewrite="answers", copies=1)
    variants = augment_records(_rows(), spec)[len(QUESTIONS) :]
    assert variants and {v["augmentation"] for v in variants} == {"synonym+insert+swap+delete"}
    for variant in variants:
        source = _rows()[variant["augmented_from"]]
        assert variant["messages"][1] == source["messages"][1]  # the prompt stays
        assert variant["messages"][2] != source["messages"][2]


def test_tool_calls_images_and_control_tokens_are_never_touched() -> None:
    call = [{"type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]
    row = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {
                        "type": "text",
                        "text": "Look at <start_of_image> this picture and tell me about "
                        "`the weather code` in Paris today, see https://example.org/weather now.",
                    },
                ],
            },
            {"role": "assistant", "content": [], "tool_calls": call},
            {
                "role": "tool",
                "name": "weather",
                "content": [{"type": "text", "text": "sunny skies"}],
            },
            _text("assistant", "It is sunny in Paris today."),
        ],
        "tools": '[{"type": "function", "function": {"name": "weather"}}]',
        "images": [b"not looked at by text methods"],
    }
    spec = _spec(
        rewrite="both",
        copies=5,
        methods=[{"name": "swap", "rate": 0.5}, {"name": "delete", "rate": 0.3}],
    )
    variants = variants_of(row, 0, spec)
    assert variants
    for variant in variants:
        messages = variant["messages"]
        text = messages[0]["content"][1]["text"]
        for kept in ("<start_of_image>", "`the weather code`", "https://example.org/weather"):
            assert kept in text
        assert messages[0]["content"][0] == {"type": "image"}
        assert messages[1] == row["messages"][1]  # the call, exactly
        assert messages[2] == row["messages"][2]  # the tool's result, exactly
        assert variant["tools"] == row["tools"] and variant["images"] == row["images"]


def test_text_methods_keep_what_is_between_words() -> None:
    rng = random.Random(1)
    text = "Alpha, beta; gamma <|turn> delta."
    swapped = text_ops.swap(text, 0.5, rng)
    assert sorted(swapped.replace(",", " ").replace(";", " ").replace(".", " ").split()) == sorted(
        text.replace(",", " ").replace(";", " ").replace(".", " ").split()
    )
    assert swapped.count(",") == 1 and "<|turn>" in swapped and swapped.endswith(".")
    deleted = text_ops.delete("one two three four five six", 0.5, random.Random(3))
    assert 1 <= len(deleted.split()) < 6 and "  " not in deleted
    assert text_ops.delete("single", 0.5, rng) == "single"


def test_wordnet_answers_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("augmentation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    wordnet.cache_clear()
    synonyms = wordnet().synonyms("quick")
    assert "fast" in synonyms and "quick" not in synonyms
    assert "Canis familiaris" in wordnet().synonyms("dog")  # multi-word, spaces
    assert wordnet().synonyms("zzzznotaword") == ()
    out = augment_records(_rows(), _spec(copies=3))
    methods = {v["augmentation"] for v in out[len(QUESTIONS) :]}
    assert {"synonym", "insert"} <= methods


def test_a_missing_wordnet_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match="wordnet-base"):
        WordNet(tmp_path)
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path))
    wordnet.cache_clear()
    try:
        with pytest.raises(InvalidInput, match="apt-get install wordnet-base"):
            variants_of(_rows()[0], 0, _spec(methods=[{"name": "synonym"}]))
        # Swap and delete need nothing.
        assert variants_of(_rows()[0], 0, _spec(methods=[{"name": "swap"}]))
    finally:
        wordnet.cache_clear()


def _picture(fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    image = Image.new("RGB", size)
    for x in range(size[0]):
        for y in range(size[1]):
            image.putpixel((x, y), (x * 4 % 256, y * 5 % 256, (x + y) % 256))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    "method",
    [
        FlipMethod(),
        FlipMethod(direction="vertical"),
        CropMethod(rate=0.3),
        RotateMethod(degrees=30),
        ColorMethod(rate=0.4),
    ],
    ids=lambda m: f"{m.name}",
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_methods_change_pixels_and_keep_the_size(method, fmt: str) -> None:
    data = _picture(fmt)
    out = augment_image(data, [method], random.Random(0))
    assert out != data
    facts = checked_image(out)  # within the limits every image from a user meets
    assert (facts.width, facts.height, facts.format) == (64, 48, fmt)
    with Image.open(io.BytesIO(data)) as before, Image.open(io.BytesIO(out)) as after:
        assert list(before.convert("RGB").getdata()) != list(after.convert("RGB").getdata())
    assert out == augment_image(data, [method], random.Random(0))  # seeded


def test_image_rows_get_new_images_and_text_rows_no_image_variant() -> None:
    picture = _picture()
    with_image = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}],
            },
            _text("assistant", "A pattern."),
        ],
        "images": [picture],
    }
    text_only = _rows()[0]
    spec = _spec(methods=[{"name": "flip"}, {"name": "color"}], copies=2)
    variants = variants_of(with_image, 0, spec)
    assert len(variants) == 2
    for variant in variants:
        assert variant["images"][0] != picture and variant["messages"] == with_image["messages"]
    assert variants_of(text_only, 1, spec) == []
