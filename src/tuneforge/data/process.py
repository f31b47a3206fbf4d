"""Processing: raw rows → mapped, validated, split Gemma conversations with token statistics.

Works batch by batch so memory follows the batch size, not the dataset: each batch is mapped,
checked for duplicates and length (tokens counted with the real Gemma tokenizer, in parallel
batches), reported, and the kept records are collected per split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tuneforge.data.conversation import Message
from tuneforge.data.mapping import ImageResolver, RowMapper
from tuneforge.data.readers import iter_rows
from tuneforge.data.splits import SplitSpec, split_indices
from tuneforge.data.stats import DatasetStats, StatsBuilder
from tuneforge.data.validation import ReportBuilder, ValidationReport
from tuneforge.models.chat_template import prompt_and_answer, render
from tuneforge.schemas.datasets import ProcessingConfig
from tuneforge.services.errors import InvalidInput

BATCH_ROWS = 2_000
TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass
class Processed:
    splits: dict[str, pa.Table]
    report: ValidationReport
    stats: DatasetStats


def texts_for_length(record: Mapping[str, Any]) -> tuple[str, str]:
    """The rendered prompt and answer whose tokens make the record's length."""
    if "text" in record and "messages" not in record and "prompt" not in record:
        return "", str(record["text"])
    if "messages" in record:
        return prompt_and_answer(record["messages"])
    prompt: list[Message] = record["prompt"]
    rendered = render(prompt, add_generation_prompt=True)
    answers = [render(a, bos=False) for a in (record.get("chosen"), record.get("rejected")) if a]
    return rendered, max(answers, key=len, default="")


def turns_of(record: Mapping[str, Any]) -> int:
    """User and assistant turns in a record (what the stats chart as turns per example)."""
    if "text" in record and "messages" not in record and "prompt" not in record:
        return 1
    turns = record.get("messages") or record["prompt"]
    count: int = sum(m["role"] != "system" for m in turns)
    return count + (1 if "chosen" in record else 0)


def records(table: pa.Table) -> list[dict[str, Any]]:
    """The table's rows as dicts, with columns the reader kept as JSON text decoded."""
    return [row for batch in iter_rows(table, max(table.num_rows, 1)) for row in batch]


def _batches(
    table: pa.Table, indices: list[int]
) -> Iterator[tuple[list[int], list[dict[str, Any]]]]:
    for start in range(0, len(indices), BATCH_ROWS):
        chunk = indices[start : start + BATCH_ROWS]
        yield chunk, records(table.take(pa.array(chunk, pa.int64())))


def _groups(
    tables: Mapping[str, pa.Table], config: ProcessingConfig
) -> tuple[pa.Table, dict[str, list[int]]]:
    """One table of all source rows, and the rows to process in each group: the source's
    splits (split mode `source`), or all rows, sampled when asked (split after validation)."""
    combined = pa.concat_tables(list(tables.values()), promote_options="permissive")
    for column in (config.split.stratify_by, config.label_column):
        if column and column not in combined.column_names:
            raise InvalidInput(f"There is no column {column!r} (for stratifying or labels).")
    if config.split.mode == "source":
        groups, start = {}, 0
        for name, table in tables.items():
            groups[name] = list(range(start, start + table.num_rows))
            start += table.num_rows
        return combined, groups
    everything = split_indices(
        SplitSpec(mode="none", sample_size=config.split.sample_size, seed=config.split.seed),
        combined.num_rows,
    )
    return combined, {"all": everything["train"]}


def process(
    tables: Mapping[str, pa.Table],
    config: ProcessingConfig,
    count_tokens: TokenCounter,
    images: ImageResolver | None = None,
    progress: Callable[[float], None] | None = None,
) -> Processed:
    """Map and validate the source `tables` (one per source split), then split what is kept,
    so the test split has exactly the size asked for."""
    combined, groups = _groups(tables, config)
    mapper = RowMapper(config.mapping, combined.column_names, images)
    report = ReportBuilder(config.on_problem, config.drop_duplicates)
    kept: dict[str, list[Kept]] = {name: [] for name in groups}
    total, done = sum(len(rows) for rows in groups.values()), 0
    for group, indices in groups.items():
        for chunk, rows in _batches(combined, indices):
            kept[group] += _batch(mapper, report, config, count_tokens, chunk, rows)
            done += len(rows)
            if progress is not None:
                progress(done / total if total else 1.0)
    if config.split.mode != "source":
        rows_kept = kept.pop("all")
        labels = (
            [k[4].get(config.split.stratify_by) for k in rows_kept]
            if config.split.stratify_by
            else None
        )
        spec = config.split.model_copy(update={"sample_size": None})
        for name, indices in split_indices(spec, len(rows_kept), labels).items():
            kept[name] = [rows_kept[i] for i in indices]
    stats = StatsBuilder(label_column=config.label_column)
    for name, rows_of_split in kept.items():
        stats.add_lengths(
            name,
            [k[1] for k in rows_of_split],
            [k[2] for k in rows_of_split],
            [turns_of(k[0]) for k in rows_of_split],
            [k[3] for k in rows_of_split],
            [k[4].get(config.label_column) for k in rows_of_split] if config.label_column else None,
        )
    splits = {
        name: pa.Table.from_pylist([k[0] for k in rows_of_split])
        for name, rows_of_split in kept.items()
        if rows_of_split
    }
    return Processed(splits, report.finish(), stats.finish())


Kept = tuple[dict[str, Any], int, int, str, dict[str, Any]]


def _batch(
    mapper: RowMapper,
    report: ReportBuilder,
    config: ProcessingConfig,
    count_tokens: TokenCounter,
    chunk: list[int],
    rows: list[dict[str, Any]],
) -> list[Kept]:
    """Map and check one batch; returns (record, prompt tokens, answer tokens, text, source row)
    for each kept row."""
    results = [mapper.map(row) for row in rows]
    mapped = [(i, r.record) for i, r in enumerate(results) if r.record is not None]
    texts = {i: texts_for_length(record) for i, record in mapped}
    counts = iter(count_tokens([t for pair in texts.values() for t in pair]))
    lengths = {i: (next(counts), next(counts)) for i in texts}
    kept: list[Kept] = []
    for i, (row, result) in enumerate(zip(rows, results, strict=True)):
        problems = list(result.problems)
        if result.record is not None:
            problems += report.duplicate_problems(result.record)
            size = sum(lengths[i])
            if size > config.max_length:
                problems.append(("too_long", f"{size} tokens > {config.max_length}"))
        if report.add(chunk[i], problems, row) and result.record is not None:
            kept.append((result.record, *lengths[i], "".join(texts[i]), row))
    return kept
