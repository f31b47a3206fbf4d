"""Dataset statistics: hand-computed lengths and percentiles, labels, duplicates, batching, and
agreement with the benchmark's pure-Python baseline."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from tests.models import models_cache_dir
from tuneforge.data.conversation import message
from tuneforge.data.stats import StatsBuilder, compute_stats, histogram_width
from tuneforge.models.tokenizer import ensure_tokenizer_dir, gemma_tokenizer

BENCH = Path(__file__).parents[2] / "bench" / "data_processing.py"


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return gemma_tokenizer(models_cache_dir())


def row(answer: str, prompt: str = "Hi", label: Any = None) -> dict[str, Any]:
    return {"messages": [message("user", prompt), message("assistant", answer)], "label": label}


def test_lengths_and_percentiles_by_hand(tokenizer: Tokenizer):
    # "word word ... word" is one token per word; the answer adds <end_of_turn> and "\n".
    words = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]
    rows = [row(" ".join(["word"] * n)) for n in words]
    assert [len(tokenizer.encode(" ".join(["word"] * n)).ids) - 1 for n in words] == words
    # "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n" is 10 tokens.
    stats = compute_stats({"train": rows[:7], "test": rows[7:]}, tokenizer, batch_size=4)
    assert stats.rows == {"train": 7, "test": 3}
    answer = stats.answer_tokens
    # Lengths 3..11 and 102; nearest rank: p50 is the 5th, p90 the 9th, p95 and p99 the 10th.
    assert (answer.count, answer.min, answer.max) == (10, 3, 102)
    assert answer.mean == pytest.approx((3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 102) / 10)
    assert (answer.p50, answer.p90, answer.p95, answer.p99) == (7, 11, 102, 102)
    assert (stats.prompt_tokens.min, stats.prompt_tokens.max) == (10, 10)
    assert (stats.total_tokens.p50, stats.total_tokens.max) == (17, 112)
    # A span of 100 makes bins of 5 from 0 to 105: [0, 5) holds 3 and 4, [100, 105) holds 102.
    bins = [(b.start, b.end, b.count) for b in answer.histogram]
    assert len(bins) == 21
    assert bins[:3] == [(0, 5, 2), (5, 10, 5), (10, 15, 2)]
    assert bins[-1] == (100, 105, 1)
    assert sum(b.count for b in answer.histogram) == 10
    assert stats.turns == {2: 10}
    assert stats.labels is None


def test_histogram_widths_are_round():
    assert [histogram_width(span) for span in (1, 20, 21, 41, 100, 101, 250, 1001, 30_000)] == [
        1,
        1,
        2,
        5,
        5,
        10,
        20,
        100,
        2000,
    ]


def test_labels_duplicates_turns_and_prompt_only_rows(tokenizer: Tokenizer):
    rows = [row(f"answer {i}", label=f"class-{i % 60}") for i in range(120)]
    rows += [row("Same answer.", label="class-0"), row("same   ANSWER.", label="class-0")]
    rows += [row("Same answer.", label=None)]
    long_conversation = [message("system", "Be kind.")] + [
        message("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(6)
    ]
    rows.append({"messages": long_conversation, "label": "class-1"})
    rows.append({"messages": [message("user", "Open question?")], "label": "class-1"})
    stats = compute_stats({"train": rows}, tokenizer, label_column="label", batch_size=50)
    assert stats.labels is not None
    assert stats.labels.distinct == 61  # 60 classes and "(missing)"
    top = {entry.label: entry.count for entry in stats.labels.top}
    assert len(top) == 50 and top["class-0"] == 4 and top["class-1"] == 4
    assert stats.labels.other == len(rows) - sum(top.values())
    assert (stats.duplicates.exact, stats.duplicates.normalized) == (1, 2)
    assert stats.turns == {1: 1, 2: 123, 6: 1}
    assert stats.answer_tokens.min == 0  # the open question has no answer yet


def test_batching_does_not_change_the_result(tokenizer: Tokenizer):
    rows = [row(f"Answer number {i} " * (i % 7), prompt=f"Q{i}", label=i % 3) for i in range(200)]
    one_batch = compute_stats({"train": rows}, tokenizer, label_column="label", batch_size=1000)
    many = compute_stats({"train": iter(rows)}, tokenizer, label_column="label", batch_size=7)
    assert one_batch == many


def test_builder_checks_labels_and_handles_no_rows(tokenizer: Tokenizer):
    builder = StatsBuilder(tokenizer, label_column="label")
    with pytest.raises(ValueError, match="labels"):
        builder.add("train", [row("x")["messages"]])
    builder.add("train", [], [])
    stats = builder.finish()
    assert stats.rows == {} and stats.total_tokens.count == 0 and stats.total_tokens.histogram == []


@pytest.mark.slow  # three sides, one of them through transformers and datasets
def test_the_benchmark_paths_agree(tokenizer: Tokenizer, tmp_path: Path):
    """The benchmark's three sides keep the same rows in the same splits, with the same token
    ids, labels and statistics (its ratios compare equal work)."""
    from transformers import AutoTokenizer

    bench = runpy.run_path(str(BENCH))
    path = tmp_path / "data.csv"
    bench["generate_csv"](path, 1000)
    ours = bench["tuneforge_side"](path, tokenizer, 300, 0.1)
    fast = AutoTokenizer.from_pretrained(ensure_tokenizer_dir(models_cache_dir()))
    theirs = bench["datasets_side"](path, fast, None, tmp_path / "hf", 0.1)
    naive = bench["naive_side"](path, tokenizer, 0.1)
    assert ours.stats["rows"] == {"train": 900, "test": 100}
    bench["assert_same"](ours, theirs)
    bench["assert_same"](ours, naive)
