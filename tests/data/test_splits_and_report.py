"""Splits are seeded and reproducible (and stratified on request); the report counts everything."""

from __future__ import annotations

from collections import Counter

import pytest

from tuneforge.data.splits import SplitSpec, split_indices
from tuneforge.data.validation import ReportBuilder


def test_manual_split_is_reproducible_and_complete() -> None:
    spec = SplitSpec(test_size=0.2, seed=7)
    first = split_indices(spec, 100)
    assert first == split_indices(spec, 100)
    assert len(first["test"]) == 20 and len(first["train"]) == 80
    assert sorted(first["train"] + first["test"]) == list(range(100))
    assert first != split_indices(SplitSpec(test_size=0.2, seed=8), 100)


def test_counts_sampling_none_and_tiny_data() -> None:
    assert len(split_indices(SplitSpec(test_size=15), 100)["test"]) == 15
    sampled = split_indices(SplitSpec(test_size=0.5, sample_size=10), 1000)
    assert len(sampled["train"]) + len(sampled["test"]) == 10
    assert split_indices(SplitSpec(mode="none"), 5) == {"train": [0, 1, 2, 3, 4]}
    tiny = split_indices(SplitSpec(test_size=0.01), 2)
    assert (len(tiny["train"]), len(tiny["test"])) == (1, 1)  # both splits non-empty
    with pytest.raises(ValueError, match="whole number"):
        SplitSpec(test_size=2.5)


def test_stratified_split_keeps_proportions() -> None:
    labels = ["pos"] * 80 + ["neg"] * 20
    parts = split_indices(SplitSpec(test_size=0.25, stratify_by="label"), 100, labels)
    assert Counter(labels[i] for i in parts["test"]) == {"pos": 20, "neg": 5}


def test_repeats_of_an_example_land_in_one_split() -> None:
    # 100 rows: 30 distinct examples repeated 3 times (rows 0..89), then 10 single rows.
    groups = [f"example {i % 30}" for i in range(90)] + [f"single {i}" for i in range(10)]
    for seed in range(20):
        spec = SplitSpec(test_size=0.1, seed=seed)
        parts = split_indices(spec, 100, groups=groups)
        assert len(parts["test"]) == 10  # exactly the size asked for
        assert {groups[i] for i in parts["train"]}.isdisjoint(groups[i] for i in parts["test"])
        assert parts == split_indices(spec, 100, groups=groups)
    labels = ["pos" if i % 2 else "neg" for i in range(30)] * 3 + ["pos"] * 10
    parts = split_indices(SplitSpec(test_size=0.2, stratify_by="label"), 100, labels, groups)
    assert {groups[i] for i in parts["train"]}.isdisjoint(groups[i] for i in parts["test"])
    # Without repeats, the groups change nothing.
    spec = SplitSpec(test_size=0.2, seed=7)
    assert split_indices(spec, 50, groups=list(range(50))) == split_indices(spec, 50)


def test_report_counts_every_problem_and_keeps_examples() -> None:
    builder = ReportBuilder("drop", drop_duplicates=True)
    rows = [{"q": "a"}, {"q": "a"}, {"q": "A "}, {"q": "b"}]
    kept = []
    for i, row in enumerate(rows):
        problems = builder.duplicate_problems(row)
        if i == 3:
            problems.append(("too_long", "5000 tokens > 4096"))
        kept.append(builder.add(i, problems, row))
    report = builder.finish()
    assert kept == [True, False, False, False]
    assert (report.rows_in, report.rows_out, report.dropped) == (4, 1, 3)
    codes = {p.code: p for p in report.problems}
    assert codes["duplicate"].count == 1 and codes["duplicate"].examples[0].row == 1
    assert codes["duplicate_normalised"].examples[0].row == 2
    assert codes["too_long"].examples[0].detail == "5000 tokens > 4096"
    keep_dupes = ReportBuilder("drop", drop_duplicates=False)
    assert keep_dupes.add(0, [("duplicate", "again")], {}) is True
