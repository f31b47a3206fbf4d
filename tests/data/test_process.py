"""Processing: the column-wise path for the `fields` layout gives exactly what the row-by-row path
gives (tables, report, statistics) on messy data in every mode, and processing's own rules hold."""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from tokenizers import Tokenizer

from tests.models import models_cache_dir
from tuneforge.data import fast_fields
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.conversation import message
from tuneforge.data.fast_fields import FieldsMapper
from tuneforge.data.mapping import RowMapper
from tuneforge.data.process import Processed, process, rendered_texts
from tuneforge.data.readers import JSON_TEXT_METADATA
from tuneforge.data.validation import normalised_text
from tuneforge.models.chat_template import render
from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer

WORDS = ["alpha", "Beta", "GAMMA", "délta", "ΣΊΣΥΦΟΣ", "İstanbul", "naïve", "x", "42", "<b>"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", " \n "]
Counter = Callable[[Sequence[str]], list[int]]


@pytest.fixture(scope="module")
def counter() -> Counter:
    tokenizer: Tokenizer = gemma_tokenizer(models_cache_dir())
    return lambda texts: count_tokens(texts, tokenizer)


def _text(rng: random.Random, words: int) -> str:
    out = rng.choice(["", "", "", " ", "\n"])
    for _ in range(words):
        out += rng.choice(WORDS) + rng.choice(SPACES)
    return out.rstrip() + rng.choice(["", "", ".", " ", "\t"])


def _cell(rng: random.Random, words: int = 6) -> str | None:
    roll = rng.random()
    if roll < 0.04:
        return None
    if roll < 0.08:
        return rng.choice(["", "   ", "\t\n", "\u00a0"])
    return _text(rng, rng.randint(1, words))


def _variant(name: str, value: Any, rng: random.Random) -> Any:
    """The same text but for case and spaces (or, now and then, exactly the same)."""
    if not isinstance(value, str) or name == "meta" or rng.random() < 0.3:
        return value
    changed = value.upper() if rng.random() < 0.5 else value.lower()
    return "  " + changed.replace(" ", "\t ") + " "


def messy_rows(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Rows with nulls, blanks, numbers, long texts, Unicode and (near) duplicates."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        long = rng.random() < 0.05
        rows.append(
            {
                "question": _cell(rng),
                "answer": _text(rng, 150) if long else _cell(rng, 20),
                "system": _cell(rng, 3) if rng.random() < 0.5 else "Be kind.",
                "better": _cell(rng),
                "worse": _cell(rng),
                "stars": None if rng.random() < 0.1 else rng.randint(0, 5),
                "score": None if rng.random() < 0.1 else rng.choice([0.5, 1.0, 1e16, -0.0]),
                "topic": rng.choice(["a", "b", "c", None]),
                "meta": rng.choice([None, '{"k": ["A b"]}', '{"k": ["a  B"]}', '{"k": []}']),
            }
        )
    for _ in range(count // 4):
        rows.insert(
            rng.randrange(len(rows)), {k: _variant(k, v, rng) for k, v in rng.choice(rows).items()}
        )
    return rows


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    meta = table.schema.get_field_index("meta")
    return table.set_column(
        meta, table.schema.field(meta).with_metadata(JSON_TEXT_METADATA), table["meta"]
    )


def config(mapping: dict[str, Any], **options: Any) -> ProcessingConfig:
    return ProcessingConfig.model_validate(
        {"mapping": mapping, "max_length": 96, "label_column": "topic"} | options
    )


def both(
    tables: dict[str, pa.Table],
    settings: ProcessingConfig,
    counter: Counter,
    monkeypatch: pytest.MonkeyPatch,
    batch_rows: int | None = None,
) -> Processed:
    """Process column-wise and row by row; assert that both give the same, return it."""
    combined = pa.concat_tables(list(tables.values()))
    assert FieldsMapper.compile(RowMapper(settings.mapping, combined.column_names), combined.schema)
    fast = process(tables, settings, counter, batch_rows=batch_rows)
    with monkeypatch.context() as patch:
        patch.setattr(FieldsMapper, "compile", classmethod(lambda *_: None))
        general = process(tables, settings, counter, batch_rows=batch_rows)
    assert fast.report == general.report
    assert fast.stats == general.stats
    assert list(fast.splits) == list(general.splits)
    for name, table in fast.splits.items():
        assert table.schema == general.splits[name].schema
        assert table.equals(general.splits[name]), name
    return fast


CONVERSATION = {"user": {"column": "question"}, "assistant": {"column": "answer"}}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], set[str]]] = {
    "conversation, duplicates dropped": (
        CONVERSATION,
        {"drop_duplicates": True},
        {"empty_assistant", "duplicate_normalised", "too_long"},
    ),
    "system column, template over numbers, stratified": (
        {
            "system": {"column": "system"},
            "system_prompt": "ignored while there is a system column",
            "user": {"template": "Q: {question} ({stars} stars, {score}) {{literal}}"},
            "assistant": {"column": "answer"},
        },
        {"split": {"test_size": 0.25, "stratify_by": "topic", "seed": 3}},
        {"empty_field", "duplicate_normalised", "too_long"},
    ),
    "system prompt, numbers as answers, sample": (
        {
            "system_prompt": "  Answer\tbriefly.  ",
            "user": {"column": "question"},
            "assistant": {"column": "stars"},
        },
        {"split": {"sample_size": 150, "test_size": 20}},
        {"missing_field", "empty_assistant"},
    ),
    "float answers, duplicates kept (the default)": (
        {"user": {"template": "a {{constant}} prompt"}, "assistant": {"column": "score"}},
        {},
        {"missing_field", "duplicate"},
    ),
    "prompt only, extras kept": (
        {"mode": "prompt_only", "system_prompt": "Think.", "user": {"column": "question"}},
        {"split": {"mode": "none"}},
        {"empty_field", "duplicate_normalised"},
    ),
    "preference": (
        {
            "mode": "preference",
            "system": {"template": "{system}"},
            "user": {"column": "question"},
            "chosen": {"column": "better"},
            "rejected": {"column": "worse"},
        },
        {},
        {"empty_field", "empty_answer", "missing_answer", "duplicate_normalised"},
    ),
    "language modelling": (
        {"mode": "language_modeling", "text": {"column": "answer"}},
        {"on_problem": "fail"},
        {"missing_field", "duplicate_normalised", "too_long"},
    ),
    "language modelling, template": (
        {"mode": "language_modeling", "text": {"template": "{question}\n\n{answer}"}},
        {"label_column": None},
        {"duplicate", "too_long"},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_column_wise_is_row_by_row(
    case: str, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping, options, expected = CASES[case]
    result = both(
        {"train": table_of(messy_rows(400))}, config(mapping, **options), counter, monkeypatch
    )
    codes = {problem.code for problem in result.report.problems}
    assert expected <= codes
    assert result.report.rows_out > 100


def test_batches_and_source_splits_change_nothing(
    counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = messy_rows(300, seed=11)
    tables = {"train": table_of(rows[:200]), "validation": table_of(rows[200:])}
    settings = config(CONVERSATION, split={"mode": "source"})
    small = both(tables, settings, counter, monkeypatch, batch_rows=7)
    assert small == both(tables, settings, counter, monkeypatch)
    assert list(small.splits) == ["train", "validation"]
    assert {"duplicate", "duplicate_normalised", "too_long"} <= {
        p.code for p in small.report.problems
    }


def test_repeated_examples_are_kept_on_one_side_of_the_split(counter: Counter) -> None:
    questions = [f"Question {i}?" for i in range(40)] * 3 + [f"Once {i}?" for i in range(40)]
    table = pa.table({"question": questions, "answer": ["Yes."] * len(questions)})
    for seed in range(5):
        options = {"split": {"test_size": 0.2, "seed": seed}, "label_column": None}
        result = process({"train": table}, config(CONVERSATION, **options), counter)
        assert result.report.rows_out == 160  # the repeats are counted, and kept
        assert {p.code: p.count for p in result.report.problems} == {"duplicate": 80}
        asked = {
            name: {turns[0]["content"][0]["text"] for turns in split["messages"].to_pylist()}
            for name, split in result.splits.items()
        }
        assert result.splits["test"].num_rows == 32
        assert asked["train"].isdisjoint(asked["test"])
    options = {"drop_duplicates": True, "label_column": None}
    dropped = process({"train": table}, config(CONVERSATION, **options), counter)
    assert dropped.report.rows_out == 80


def test_a_csv_read_by_arrow(
    tmp_path: Path, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["question", "answer", "topic"])
        rng = random.Random(5)
        writer.writerows(
            (_cell(rng) or "", _cell(rng, 30) or "", rng.choice("ab")) for _ in range(300)
        )
        writer.writerows([["Same?", "Yes.", "a"], ["same?", " YES. ", "b"], ["12", "34", "a"]])
    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    both({"train": table}, config(CONVERSATION), counter, monkeypatch)


def test_long_output_comes_in_chunks(counter: Counter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_fields, "CHUNK_CHARS", 500)
    result = both({"train": table_of(messy_rows(200))}, config(CONVERSATION), counter, monkeypatch)
    assert result.splits["train"]["messages"].num_chunks > 1


def test_what_the_column_wise_path_leaves_to_the_row_mapper() -> None:
    rows = [{"question": "Hi", "answer": "Hello", "turns": [{"role": "user", "content": "Hi"}]}]
    table = pa.Table.from_pylist(rows)

    def compiled(mapping: dict[str, Any], on: pa.Table = table) -> FieldsMapper | None:
        return FieldsMapper.compile(RowMapper(config(mapping).mapping, on.column_names), on.schema)

    assert compiled(CONVERSATION) is not None
    assert compiled({"layout": "messages", "messages_column": "turns"}) is None
    assert compiled(CONVERSATION | {"image_column": "question"}) is None
    assert compiled({"user": {"column": "turns"}, "assistant": {"column": "answer"}}) is None
    assert compiled({"user": {"template": "{turns}"}, "assistant": {"column": "answer"}})
    json_text = table_of([{"question": "Hi", "answer": "Hello", "meta": "[1]"}])
    assert (
        compiled({"user": {"column": "meta"}, "assistant": {"column": "answer"}}, json_text) is None
    )
    record_like = pa.table({"question": ["Hi"], "chosen": ["a"]})
    assert compiled({"mode": "prompt_only", "user": {"column": "question"}}, record_like) is None


def test_preference_rows_are_measured_by_their_longer_answer(counter: Counter) -> None:
    record = {
        "prompt": [message("user", "Which?")],
        "chosen": [message("assistant", " This one. ")],
        "rejected": [message("assistant", "That")],
    }
    prompt, chosen, rejected = rendered_texts(record)
    assert prompt == render(record["prompt"], add_generation_prompt=True)
    assert (chosen, rejected) == ("This one.<end_of_turn>\n", "That<end_of_turn>\n")
    table = pa.table({"q": ["Which?"], "good": ["This one."], "bad": ["That"]})
    mapping = {"mode": "preference"} | {
        name: {"column": column}
        for name, column in (("user", "q"), ("chosen", "good"), ("rejected", "bad"))
    }
    result = process(
        {"train": table}, config(mapping, label_column=None, split={"mode": "none"}), counter
    )
    assert result.stats.turns == {2: 1}
    assert result.splits["train"].column_names == ["prompt", "chosen", "rejected"]


def test_only_the_first_examples_of_a_problem_show_their_row(counter: Counter) -> None:
    rows = [{"question": "Same", "answer": f"row {i}" if i % 2 else "Same"} for i in range(40)]
    for row in rows[1::2]:
        row["answer"] = "Same"
    shown: list[int] = []
    table = table_of([row | {"meta": None} for row in rows])
    real = fast_fields.records

    def spy(part: pa.Table) -> list[dict[str, Any]]:
        shown.append(part.num_rows)
        return real(part)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fast_fields, "records", spy)
        result = process({"train": table}, config(CONVERSATION, label_column=None), counter)
    duplicate = next(p for p in result.report.problems if p.code == "duplicate")
    assert duplicate.count == 39 and len(duplicate.examples) == 5
    assert shown == [1] * 5
    assert json.loads(duplicate.examples[0].value) == {
        "question": "Same",
        "answer": "Same",
        "meta": None,
    }


def test_progress_reaches_the_end(counter: Counter) -> None:
    seen: list[float] = []
    process(
        {"train": table_of(messy_rows(50))},
        config(CONVERSATION),
        counter,
        None,
        seen.append,
        batch_rows=16,
    )
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 3


def test_normalising_is_lower_case_and_single_spaces() -> None:
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert all(re.fullmatch(r"\s", c) for c in spaces)
    rng = random.Random(3)
    alphabet = [*spaces, *WORDS, "ẞ", "ǅ", "Σ", "ς", "\u0130", "\u200b", "a"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert normalised_text(text) == re.sub(r"\s+", " ", text.strip().lower())


def test_no_rows_or_no_usable_rows(counter: Counter, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = table_of(messy_rows(10)).slice(0, 0)
    nothing = both({"train": empty}, config(CONVERSATION), counter, monkeypatch)
    assert nothing.splits == {} and nothing.report.rows_in == 0
    blank = pa.table(
        {"question": pa.nulls(3, pa.string()), "answer": ["a", " ", None], "topic": ["a"] * 3}
    )
    result = both({"train": blank}, config(CONVERSATION), counter, monkeypatch)
    assert result.splits == {} and result.report.dropped == 3
