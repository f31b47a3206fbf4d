"""Records encoded a batch at a time give exactly what `encode_record` gives one at a time."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest
from tokenizers import Tokenizer

from tests.models import models_cache_dir
from tests.models.test_token_ids import HOSTILE
from tests.training.test_tokenize import CONVERSATIONS, NOISE, TOOL_CONVERSATION, TOOLS_JSON
from tuneforge.data.conversation import message
from tuneforge.errors import InvalidInput
from tuneforge.models.tokenizer import gemma_tokenizer
from tuneforge.training.components.tokenize import Example, encode_record, encode_records


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return gemma_tokenizer(models_cache_dir())


def _text(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(HOSTILE)
    return "".join(rng.choices([*NOISE, " ", " ", "word", "Hello"], k=rng.randint(1, 40)))


def _conversation(rng: random.Random) -> list[Any]:
    messages = [message("system", _text(rng))] if rng.random() < 0.4 else []
    for _ in range(rng.randint(1, 3)):
        messages += [message("user", _text(rng)), message("assistant", _text(rng))]
    return messages


def _records() -> list[Mapping[str, Any]]:
    rng = random.Random(17)
    records: list[Mapping[str, Any]] = [{"messages": c} for c in CONVERSATIONS]
    records += [{"messages": _conversation(rng)} for _ in range(300)]
    records += [{"text": _text(rng)} for _ in range(20)]
    records += [
        {
            "prompt": [message("user", _text(rng))],
            "chosen": [message("assistant", _text(rng))],
            "rejected": [message("assistant", _text(rng))],
        }
        for _ in range(20)
    ]
    records += [
        {"messages": TOOL_CONVERSATION, "tools": TOOLS_JSON},  # encoded on its own
        {"messages": [message("user", "Only a question")]},
        {"messages": [message("assistant", "Out of order"), message("user", "Hi")]},
        {"prompt": [message("user", "No answer")]},
        {"question": "Wrong shape"},
        {"messages": [{"role": "user", "content": [{"type": "image"}]}], "images": [b"x"]},
    ]
    rng.shuffle(records)
    return records


def _one_at_a_time(
    records: list[Mapping[str, Any]], tokenizer: Tokenizer, max_length: int, assistant_only: bool
) -> list[Example | tuple[type, str] | None]:
    outcomes: list[Example | tuple[type, str] | None] = []
    for record in records:
        try:
            outcomes.append(encode_record(record, tokenizer, max_length, assistant_only))
        except ValueError as exc:
            outcomes.append((type(exc), str(exc)))
    return outcomes


@pytest.mark.parametrize("max_length", [16, 48, 10_000])
@pytest.mark.parametrize("assistant_only", [True, False])
def test_batched_equals_one_at_a_time(
    tokenizer: Tokenizer, max_length: int, assistant_only: bool
) -> None:
    records = _records()
    batched = [
        (type(outcome), str(outcome)) if isinstance(outcome, ValueError) else outcome
        for outcome in encode_records(records, tokenizer, max_length, assistant_only)
    ]
    expected = _one_at_a_time(records, tokenizer, max_length, assistant_only)
    assert len(batched) == len(records)
    for record, ours, theirs in zip(records, batched, expected, strict=True):
        assert ours == theirs, record
    kinds = {type(outcome) for outcome in expected}
    assert {Example, tuple} <= kinds  # examples and refused records both checked
    if max_length == 16:
        assert any(isinstance(e, Example) and len(e.input_ids) == 16 for e in expected)


def test_the_recipe_skips_empty_examples_and_names_a_refused_record(tokenizer: Tokenizer) -> None:
    from tuneforge.training.recipes.sft import encode_all
    from tuneforge.training.spec import SFTSpec

    spec = SFTSpec(base_model="gemma-3-270m", dataset_id="d", max_length=64)
    good = {"messages": [message("user", "Hi"), message("assistant", "Hello there!")]}
    no_answer = {"messages": [message("user", "Only a question")]}
    assert (
        encode_all([good, no_answer, good], tokenizer, spec)
        == [encode_record(good, tokenizer, 64, True)] * 2
    )
    refused = {"messages": [message("assistant", "Out of order"), message("user", "Hi")]}
    with pytest.raises(InvalidInput, match=r"^Test example 3: "):
        encode_all([good, no_answer, refused, good], tokenizer, spec, split="test")
