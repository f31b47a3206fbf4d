"""Preference, feedback and prompt-only data: each layout people bring is recognised with no input
and processed into the fixed record shapes; broken rows are reported with their codes, never
crashed on; the statistics measure each side (numbers checked by hand)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from tests.models import models_cache_dir
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.conversation import message
from tuneforge.data.formats import guess_mapping
from tuneforge.data.mapping import MappingSpec, RowMapper
from tuneforge.data.pairs import parse_label
from tuneforge.data.process import Processed, process, records
from tuneforge.data.readers import read_table
from tuneforge.data.stats import HistogramBin
from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer

Counter = Callable[[Sequence[str]], list[int]]
SAMPLE_ROWS = 50  # what an upload looks at to recognise the format


@pytest.fixture(scope="module")
def counter() -> Counter:
    tokenizer: Tokenizer = gemma_tokenizer(models_cache_dir())
    return lambda texts: count_tokens(texts, tokenizer)


def user(text: str) -> dict[str, Any]:
    return message("user", text)  # type: ignore[return-value]


def assistant(text: str) -> dict[str, Any]:
    return message("assistant", text)  # type: ignore[return-value]


def jsonl(tmp_path: Path, rows: list[dict[str, Any]]) -> pa.Table:
    """`rows` written as a JSON Lines upload and read back by the upload's reader."""
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return read_table(path, path.name).table


def detect_and_process(
    table: pa.Table, counter: Counter, **options: Any
) -> tuple[MappingSpec, Processed]:
    guess = guess_mapping(table.column_names, records(table.slice(0, SAMPLE_ROWS)))
    assert guess.sure and guess.mapping is not None, guess.reason
    config = ProcessingConfig(mapping=guess.mapping, split={"mode": "none"}, **options)
    return guess.mapping, process({"train": table}, config, counter)


def problems(result: Processed) -> dict[str, tuple[int, list[str]]]:
    return {
        p.code: (p.count, [example.detail for example in p.examples])
        for p in result.report.problems
    }


def sharegpt_pair(i: int) -> dict[str, Any]:
    """A row of the public ShareGPT preference layout: the conversation ends with the user's
    turn; chosen and rejected are one gpt turn each."""
    turns = [{"from": "human", "value": f"What is {i} + {i}?"}]
    if i % 3 == 0:  # some rows carry an earlier exchange
        turns = [
            {"from": "system", "value": "Answer with a number."},
            {"from": "human", "value": "Hello"},
            {"from": "gpt", "value": "Hello! Ask me a sum."},
            *turns,
        ]
    return {
        "conversations": turns,
        "chosen": {"from": "gpt", "value": f"{i} + {i} = {2 * i}."},
        "rejected": {"from": "gpt", "value": f"It is {2 * i + 1}, I think."},
    }


def test_the_public_sharegpt_preference_layout(tmp_path: Path, counter: Counter) -> None:
    rows = [sharegpt_pair(i) for i in range(300)]
    broken = [
        {**sharegpt_pair(1000), "rejected": {"from": "gpt", "value": " 1000 + 1000 =  2000.\n"}},
        {**sharegpt_pair(1001), "chosen": {"from": "gpt", "value": "   "}},
        {k: v for k, v in sharegpt_pair(1002).items() if k != "rejected"},
        {**sharegpt_pair(1003), "chosen": None},
    ]
    broken[0]["chosen"] = {"from": "gpt", "value": "1000 + 1000 = 2000."}
    for position, row in zip((3, 120, 200, 299), broken, strict=True):
        rows.insert(position, row)

    mapping, result = detect_and_process(jsonl(tmp_path, rows), counter)

    assert (mapping.mode, mapping.layout, mapping.messages_column) == (
        "preference",
        "sharegpt",
        "conversations",
    )
    assert result.report.rows_in == 304 and result.report.rows_out == 300
    assert problems(result) == {
        "identical_answers": (1, ["the chosen and rejected answers are the same"]),
        "empty_answer": (1, ["the chosen answer is empty"]),
        "missing_answer": (2, ["the rejected answer is missing", "the chosen answer is missing"]),
    }
    train = result.splits["train"].to_pylist()
    assert len(train) == 300
    assert train[1] == {
        "prompt": [user("What is 1 + 1?")],
        "chosen": [assistant("1 + 1 = 2.")],
        "rejected": [assistant("It is 3, I think.")],
    }
    assert [m["role"] for m in train[0]["prompt"]] == ["system", "user", "assistant", "user"]
    pairs = result.stats.pairs
    assert pairs is not None and pairs["train"].chosen_tokens.count == 300


def test_openai_layouts_explicit_and_implicit_prompt(tmp_path: Path, counter: Counter) -> None:
    explicit = [
        {
            "messages": [{"role": "user", "content": f"Name a colour ({i})."}],
            "chosen": [{"role": "assistant", "content": f"Blue {i}."}],
            "rejected": f"Maybe {i}?",
        }
        for i in range(20)
    ]
    mapping, result = detect_and_process(jsonl(tmp_path, explicit), counter)
    assert (mapping.mode, mapping.layout, mapping.messages_column) == (
        "preference",
        "messages",
        "messages",
    )
    assert result.splits["train"].to_pylist()[0] == {
        "prompt": [user("Name a colour (0).")],
        "chosen": [assistant("Blue 0.")],
        "rejected": [assistant("Maybe 0?")],
    }

    def conversation(question: str, answer: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]

    implicit = [
        {
            "chosen": conversation(f"Greet {i}", f"Hello, {i}!"),
            "rejected": conversation(f"Greet {i}", "Go away."),
        }
        for i in range(30)
    ]
    implicit[7]["rejected"] = conversation("Something else", "Go away.")
    implicit[9]["rejected"] = conversation("Greet 9", "")
    implicit[11]["chosen"] = conversation("Greet 11", "Hi!")[:-1]
    mapping, result = detect_and_process(jsonl(tmp_path, implicit), counter)
    assert mapping.implicit_prompt and mapping.user is None
    assert problems(result) == {
        "prompt_mismatch": (
            1,
            ["the chosen and rejected conversations start with different turns"],
        ),
        "empty_answer": (1, ["the rejected answer is empty"]),
        "missing_answer": (1, ["the chosen conversation does not end with an answer"]),
    }
    assert result.report.rows_out == 27
    assert result.splits["train"].to_pylist()[0] == {
        "prompt": [message("system", "Be kind."), user("Greet 0")],
        "chosen": [assistant("Hello, 0!")],
        "rejected": [assistant("Go away.")],
    }


def test_prompt_chosen_rejected_columns_and_their_variants(counter: Counter) -> None:
    for prompt in ("prompt", "instruction", "question"):
        row = {prompt: "Hi?", "chosen": "Hello.", "rejected": "Go away."}
        guess = guess_mapping(list(row), [row])
        assert guess.format == "preference" and guess.mapping is not None
        assert RowMapper(guess.mapping, list(row)).map(row).record == {
            "prompt": [user("Hi?")],
            "chosen": [assistant("Hello.")],
            "rejected": [assistant("Go away.")],
        }
    stack = {"qid": 7, "question": "Hi?", "response_j": "Hello.", "response_k": "Go away."}
    guess = guess_mapping(list(stack), [stack])
    assert guess.mapping is not None
    assert RowMapper(guess.mapping, list(stack)).map(stack).record == {
        "prompt": [user("Hi?")],
        "chosen": [assistant("Hello.")],
        "rejected": [assistant("Go away.")],
    }
    alpaca = {"instruction": "Translate", "input": "chat", "chosen": "cat", "rejected": "dog"}
    guess = guess_mapping(list(alpaca), [alpaca])
    assert guess.mapping is not None
    assert RowMapper(guess.mapping, list(alpaca)).map(alpaca).record == {
        "prompt": [user("Translate\n\nchat")],
        "chosen": [assistant("cat")],
        "rejected": [assistant("dog")],
    }
    # Duplicates of a pair are the same prompt with the same two answers.
    table = pa.table(
        {
            "prompt": ["Hi?", "Hi?", "hi? "],
            "chosen": ["Hello.", "Hello.", "Hello."],
            "rejected": ["Go away.", "No.", "go  away."],
        }
    )
    _, result = detect_and_process(table, counter)
    assert problems(result) == {
        "duplicate_normalised": (1, ["the same as an earlier row but for case/spaces"])
    }
    assert result.report.rows_out == 3  # counted, and kept by default


def test_pair_statistics_by_hand(counter: Counter) -> None:
    # "word" repeated n times renders as an answer of n + 2 tokens (with "<end_of_turn>\n"); the
    # prompt "Hi" renders as 10 tokens.
    chosen, rejected = (3, 1, 5), (1, 4, 5)
    table = pa.table(
        {
            "prompt": ["Hi"] * 3,
            "chosen": [" ".join(["word"] * n) for n in chosen],
            "rejected": [
                " ".join([w] * n) for w, n in zip(("word", "word", "bad"), rejected, strict=True)
            ],
        }
    )
    _, result = detect_and_process(table, counter)
    stats = result.stats
    assert stats.pairs is not None and list(stats.pairs) == ["train"]
    pairs = stats.pairs["train"]
    assert (pairs.chosen_tokens.min, pairs.chosen_tokens.max) == (3, 7)  # 5, 3, 7
    assert (pairs.rejected_tokens.min, pairs.rejected_tokens.max) == (3, 7)  # 3, 6, 7
    assert pairs.rejected_tokens.mean == pytest.approx(16 / 3)
    assert pairs.prompt_tokens.mean == 10
    margin = pairs.margin_tokens  # 2, -3, 0
    assert (margin.count, margin.min, margin.max) == (3, -3, 2)
    assert margin.mean == pytest.approx(-1 / 3)
    assert (margin.p10, margin.p50, margin.p90) == (-3, 0, 2)
    assert (margin.chosen_longer, margin.rejected_longer) == (1, 1)
    assert [(b.start, b.count) for b in margin.histogram] == [
        (-3, 1),
        (-2, 0),
        (-1, 0),
        (0, 1),
        (1, 0),
        (2, 1),
    ]
    assert margin.histogram[0] == HistogramBin(start=-3, end=-2, count=1)
    # An example is its prompt with the longer answer: 10 + (5, 6, 7).
    assert (stats.answer_tokens.min, stats.answer_tokens.max) == (5, 7)
    assert (stats.total_tokens.min, stats.total_tokens.mean, stats.total_tokens.max) == (
        15,
        16,
        17,
    )
    assert stats.turns == {2: 3} and stats.feedback is None and stats.reference_columns is None


def test_kto_feedback(tmp_path: Path, counter: Counter) -> None:
    labels = [True, "thumbs up", "bad", 0, "good", "Thumbs_Down", 1, "no", "maybe", "yes", "👎"]
    rows = [
        {"prompt": f"Tell a joke ({i}).", "completion": f"Joke number {i}.", "label": label}
        for i, label in enumerate(labels)
    ]
    rows.append({"prompt": "Tell a joke.", "completion": "", "label": True})
    mapping, result = detect_and_process(jsonl(tmp_path, rows), counter)
    assert mapping.mode == "feedback" and mapping.layout == "fields"
    assert mapping.completion is not None and mapping.completion.column == "completion"
    assert mapping.label is not None and mapping.label.column == "label"
    assert problems(result) == {
        "bad_label": (1, ["the label 'maybe' is not one of true/false, 1/0, good/bad"]),
        "empty_answer": (1, ["the completion answer is empty"]),
    }
    kept = result.splits["train"].to_pylist()
    assert kept[1] == {
        "prompt": [user("Tell a joke (1).")],
        "completion": [assistant("Joke number 1.")],
        "label": True,
    }
    assert [row["label"] for row in kept] == [
        *(True, True, False, False, True, False, True, False),
        *(True, False),
    ]
    assert result.stats.feedback is not None
    assert result.stats.feedback["train"].model_dump() == {"desirable": 5, "undesirable": 5}
    assert result.stats.turns == {2: 10}

    chats = [
        {
            "messages": [
                {"role": "user", "content": f"Hi {i}"},
                {"role": "assistant", "content": f"Hello {i}"},
            ],
            "label": i % 2 == 0,
        }
        for i in range(4)
    ]
    mapping, result = detect_and_process(jsonl(tmp_path, chats), counter)
    assert (mapping.mode, mapping.layout, mapping.completion) == ("feedback", "messages", None)
    prompts = [
        {"messages": chat["messages"][:1], "response": "Hi.", "label": "good"} for chat in chats
    ]
    guess = guess_mapping(list(prompts[0]), prompts)
    assert guess.mapping is not None and guess.mapping.completion is not None
    assert (guess.mapping.layout, guess.mapping.completion.column) == ("messages", "response")
    assert RowMapper(guess.mapping, list(prompts[0])).map(prompts[0]).record == {
        "prompt": [user("Hi 0")],
        "completion": [assistant("Hi.")],
        "label": True,
    }
    assert result.splits["train"].to_pylist()[3] == {
        "prompt": [user("Hi 3")],
        "completion": [assistant("Hello 3")],
        "label": False,
    }


def test_labels_are_read_strictly() -> None:
    for value in (True, 1, 1.0, "true", " YES ", "good", "thumbs-up", "+1", "👍", "desirable"):
        assert parse_label(value) is True, value
    for value in (False, 0, -1, "false", "No", "bad", "thumbs down", "-1", "👎"):
        assert parse_label(value) is False, value
    for value in (None, 2, 0.5, "", "maybe", "positive", "yes!", [1], {"label": 1}):
        assert parse_label(value) is None, value
    # A label column that is not a desirable/undesirable label is no feedback.
    row = {"prompt": "Great film", "completion": "Review", "label": "positive"}
    assert guess_mapping(list(row), [row]).format == "prompt_completion"


def test_prompt_only_with_reference_columns(tmp_path: Path, counter: Counter) -> None:
    rows = [
        {"prompt": f"What is {i} * 3?", "answer": str(3 * i), "schema": '{"type": "integer"}'}
        for i in range(10)
    ]
    mapping, result = detect_and_process(jsonl(tmp_path, rows), counter)
    assert mapping.mode == "prompt_only"
    assert result.splits["train"].to_pylist()[2] == {
        "answer": "6",
        "schema": '{"type": "integer"}',
        "prompt": [user("What is 2 * 3?")],
    }
    assert result.stats.reference_columns == ["answer", "schema"]
    assert result.stats.answer_tokens.max == 0 and result.stats.pairs is None

    chats = [
        {
            "messages": [
                {"role": "system", "content": "Reply in JSON."},
                {"role": "user", "content": f"Give {i}."},
            ],
            "label": f"{i}",
        }
        for i in range(5)
    ]
    mapping, result = detect_and_process(jsonl(tmp_path, chats), counter)
    assert (mapping.mode, mapping.layout) == ("prompt_only", "messages")
    assert result.splits["train"].to_pylist()[4] == {
        "label": "4",
        "prompt": [message("system", "Reply in JSON."), user("Give 4.")],
    }
    assert result.stats.reference_columns == ["label"]


def test_chats_and_the_old_formats_still_read_as_before() -> None:
    sharegpt = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    assert guess_mapping(list(sharegpt), [sharegpt]).format == "sharegpt"
    row = {"prompt": "Hi", "completion": "Yo", "label": "greeting"}
    assert guess_mapping(list(row), [row]).format == "prompt_completion"


def test_mappings_for_pairs_and_feedback_must_be_complete() -> None:
    with pytest.raises(ValueError, match="implicit_prompt"):
        MappingSpec(
            mode="preference",
            implicit_prompt=True,
            user={"column": "q"},  # type: ignore[arg-type]
            chosen={"column": "c"},  # type: ignore[arg-type]
            rejected={"column": "r"},  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="needs chosen, rejected"):
        MappingSpec(mode="preference", layout="sharegpt", messages_column="conversations")
    with pytest.raises(ValueError, match="needs completion, label"):
        MappingSpec(mode="feedback", user={"column": "q"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs label"):
        MappingSpec(mode="feedback", layout="messages", messages_column="messages")


def test_the_common_hub_layouts() -> None:
    # UltraFeedback-binarized style: a prompt string, and chosen/rejected whole conversations.
    def chat(answer: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": answer}]

    row: dict[str, Any] = {
        "prompt": "Hi?",
        "prompt_id": "a1",
        "chosen": chat("Hello."),
        "rejected": chat("No."),
        "messages": chat("Hello."),
        "score_chosen": 8.0,
        "score_rejected": 2.0,
    }
    guess = guess_mapping(list(row), [row])
    assert guess.mapping is not None and guess.mapping.implicit_prompt
    assert RowMapper(guess.mapping, list(row)).map(row).record == {
        "prompt": [user("Hi?")],
        "chosen": [assistant("Hello.")],
        "rejected": [assistant("No.")],
    }
    # KTO-mix style: conversational prompt and completion columns with a boolean label.
    row = {
        "prompt": [{"role": "user", "content": "Hi?"}],
        "completion": [{"role": "assistant", "content": "Hello."}],
        "label": False,
    }
    guess = guess_mapping(list(row), [row])
    assert guess.format == "feedback" and guess.mapping is not None
    assert RowMapper(guess.mapping, list(row)).map(row).record == {
        "prompt": [user("Hi?")],
        "completion": [assistant("Hello.")],
        "label": False,
    }
