"""Processing: raw rows → mapped, validated, split Gemma conversations with token statistics.

Works batch by batch: each batch is mapped, checked for duplicates and length (tokens counted
with the real Gemma tokenizer, in parallel batches) and reported, and what is kept is collected
column by column; then the kept rows are split and the output tables built. The `fields` layout
is mapped a column at a time (`FieldsMapper`), every other mapping row by row (`RowMapper`):
both give the same tables, report and statistics. A preference pair's answers are counted
apart (the statistics measure each side); its length is the prompt with the longer answer.
A record with tools is measured as the model reads it: the tool declarations in the prompt, the
calls and results of earlier rounds in the history; duplicates compare the tools too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tuneforge.bulk import gc_paused
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.conversation import Message
from tuneforge.data.fast_fields import FieldsMapper, Mapped, column_values
from tuneforge.data.fast_fields import records as records
from tuneforge.data.image_refs import ImageResolver
from tuneforge.data.images import ImageFacts
from tuneforge.data.mapping import RowMapper
from tuneforge.data.spill import ImageSpill, SpilledSplit, spill_images
from tuneforge.data.splits import SplitSpec, split_indices
from tuneforge.data.stats import GEMMA3_TOKENS_PER_IMAGE, DatasetStats, StatsBuilder
from tuneforge.data.validation import ReportBuilder, ValidationReport, duplicate_keys
from tuneforge.errors import InvalidInput
from tuneforge.models.chat_template import END_OF_TURN, prompt_and_answer, render, render_content
from tuneforge.models.vision import image_tokens

BATCH_ROWS = 2_000  # rows mapped at a time, row by row
TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass
class Processed:
    splits: dict[str, pa.Table | SpilledSplit]  # with images: their bytes wait on disk
    report: ValidationReport
    stats: DatasetStats


def tools_of(record: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A record's tool definitions (stored as JSON text), or None when it has none."""
    text = record.get("tools")
    return json.loads(text) if text else None


def rendered_texts(record: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """The rendered prompt (with the record's tool declarations, if any), answer (a pair's
    chosen one, feedback's completion; empty for prompts) and, for a preference pair, rejected
    answer, whose tokens measure the record."""
    if "text" in record and "messages" not in record and "prompt" not in record:
        return "", str(record["text"]), None
    tools = tools_of(record)
    if "messages" in record:
        return (*prompt_and_answer(record["messages"], tools=tools), None)
    prompt: list[Message] = record["prompt"]
    rendered = render(prompt, tools=tools, add_generation_prompt=True)
    answer, rejected = (_answer(record.get(k)) for k in ("chosen", "rejected"))
    if "completion" in record:
        answer = _answer(record["completion"])
    return rendered, answer or "", rejected


def _answer(turns: list[Message] | None) -> str | None:
    return f"{render_content(turns[-1]['content'])}{END_OF_TURN}\n" if turns else None


def turns_of(record: Mapping[str, Any]) -> int:
    """User, assistant and tool turns in a record (what the stats chart as turns per
    example)."""
    if "text" in record and "messages" not in record and "prompt" not in record:
        return 1
    turns = record.get("messages") or record["prompt"]
    count: int = sum(m["role"] != "system" for m in turns)
    return count + (1 if "chosen" in record or "completion" in record else 0)


@dataclass
class Kept:
    """The rows kept so far, column by column: what the statistics, the split and the output
    table need of each."""

    prompt_tokens: list[int] = field(default_factory=list)
    answer_tokens: list[int] = field(default_factory=list)  # a pair's chosen answer
    rejected_tokens: list[int] = field(default_factory=list)  # pairs only
    turns: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the rendered example
    labels: list[Any] = field(default_factory=list)  # the label column's value
    strata: list[Any] = field(default_factory=list)  # the stratify column's value
    records: dict[str, list[Any]] = field(default_factory=dict)  # the mapper's output columns
    images: list[list[ImageFacts]] = field(default_factory=list)  # empty: no row has images

    def __len__(self) -> int:
        return len(self.texts)

    def extend(self, other: Kept) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.answer_tokens += other.answer_tokens
        self.rejected_tokens += other.rejected_tokens
        self.turns += other.turns
        self.texts += other.texts
        self.labels += other.labels
        self.strata += other.strata
        for name, values in other.records.items():
            self.records.setdefault(name, []).extend(values)
        if other.images or self.images:  # rows without images get an empty list
            self.images += [[] for _ in range(len(self) - len(other) - len(self.images))]
            self.images += other.images or [[] for _ in range(len(other))]

    def select(self, rows: Sequence[int]) -> Kept:
        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in rows] if values else []

        return Kept(
            pick(self.prompt_tokens),
            pick(self.answer_tokens),
            pick(self.rejected_tokens),
            pick(self.turns),
            pick(self.texts),
            pick(self.labels),
            pick(self.strata),
            {name: pick(values) for name, values in self.records.items()},
            pick(self.images),
        )


def image_key(record: Mapping[str, Any]) -> str:
    """A digest of a record's images, so examples that differ only by their images differ."""
    digest = hashlib.blake2b(digest_size=16)
    for data in record.get("images") or ():
        digest.update(hashlib.blake2b(data, digest_size=16).digest())
    return digest.hexdigest() if record.get("images") else ""


class _RowByRow:
    """Any mapping: each row through `RowMapper.map`, the records kept as dicts; a record's
    images go to a temporary file as soon as it is measured (`spill`), so memory holds the
    records' text, not the dataset's images."""

    batch_rows = BATCH_ROWS

    def __init__(self, mapper: RowMapper) -> None:
        self.mapper = mapper
        self.spill: ImageSpill | None = None

    def map(self, part: pa.Table) -> Mapped:
        rows = records(part)
        mapped = Mapped([], [], [], [], [], [], [], {"record": []}, rows.__getitem__)
        facts: list[list[ImageFacts]] = []
        for index, row in enumerate(rows):
            result = self.mapper.map(row)
            mapped.problems.append(result.problems)
            record = result.record
            if record is None:
                continue
            prompt, answer, rejected = rendered_texts(record)
            mapped.ok.append(index)
            mapped.prompts.append(prompt)
            mapped.answers.append(answer)
            if rejected is not None:
                mapped.rejected.append(rejected)
            mapped.turns.append(turns_of(record))
            mapped.keys.append(duplicate_keys(record))
            mapped.image_keys.append(image_key(record))
            facts.append(result.images)
            if record.get("images"):
                if self.spill is None:
                    self.spill = ImageSpill()
                spill_images(record, self.spill)
            mapped.records["record"].append(record)
        if any(facts):
            mapped.images = facts
        else:
            mapped.image_keys = []
        return mapped

    def table(self, kept: dict[str, list[Any]]) -> pa.Table | SpilledSplit:
        if self.spill is not None:
            return SpilledSplit(kept["record"], self.spill)
        return pa.Table.from_pylist(kept["record"])


def _parts(table: pa.Table, indices: list[int], size: int) -> Iterator[tuple[list[int], pa.Table]]:
    """Batches of `size` of the (ascending) rows `indices`: their numbers and their rows."""
    for start in range(0, len(indices), size):
        chunk = indices[start : start + size]
        if chunk[-1] - chunk[0] == len(chunk) - 1:  # a run, the usual case
            yield chunk, table.slice(chunk[0], len(chunk))
        else:
            yield chunk, table.take(pa.array(chunk, pa.int64()))


def _groups(
    tables: Mapping[str, pa.Table], config: ProcessingConfig
) -> tuple[pa.Table, dict[str, list[int]]]:
    """One table of all source rows, and the rows to process in each group: the source's
    splits (split mode `source`), or all rows, sampled when asked (split after validation)."""
    combined = pa.concat_tables(list(tables.values()), promote_options="permissive")
    for column in (config.split.stratify_by, config.label_column):
        if column is not None and column not in combined.column_names:
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


@gc_paused()
def process(
    tables: Mapping[str, pa.Table],
    config: ProcessingConfig,
    count_tokens: TokenCounter,
    images: ImageResolver | None = None,
    progress: Callable[[float], None] | None = None,
    *,
    batch_rows: int | None = None,
) -> Processed:
    """Map and validate the source `tables` (one per source split), then split what is kept,
    so the test split has exactly the size asked for. `batch_rows` (rows mapped at a time)
    changes nothing but memory and speed."""
    combined, groups = _groups(tables, config)
    mapper = RowMapper(config.mapping, combined.column_names, images)
    # Tools are read row by row: the column-wise path maps text columns only.
    tools = config.mapping.tools_column is not None
    fields = None if tools else FieldsMapper.compile(mapper, combined.schema)
    path = _RowByRow(mapper) if fields is None else fields
    report = ReportBuilder(config.on_problem, config.drop_duplicates)
    kept = {name: Kept() for name in groups}
    total, done = sum(len(rows) for rows in groups.values()), 0
    batches = _checked(
        path, combined, groups, batch_rows or path.batch_rows, report, config, count_tokens
    )
    for group, size, batch in batches:
        kept[group].extend(batch)
        done += size
        if progress is not None:
            progress(done / total)
    if config.split.mode != "source":
        everything = kept.pop("all")
        strata = everything.strata if config.split.stratify_by else None
        spec = config.split.model_copy(update={"sample_size": None})
        parts = split_indices(spec, len(everything), strata, groups=everything.texts)
        for name, indices in parts.items():
            kept[name] = everything.select(indices)
    splits = {name: path.table(rows.records) for name, rows in kept.items() if rows}
    return Processed(splits, report.finish(), _stats(config, kept, splits))


@gc_paused()
def split_records(table: pa.Table) -> list[dict[str, Any]]:
    """A processed split's rows as records, as training reads them."""
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _stats(
    config: ProcessingConfig, kept: dict[str, Kept], splits: dict[str, pa.Table]
) -> DatasetStats:
    """The statistics of the kept rows (`kept`), which make the output tables `splits`."""
    stats = StatsBuilder(label_column=config.label_column)
    mode = config.mapping.mode
    for name, rows in kept.items():
        labels = rows.labels if config.label_column else None
        longer = rows.answer_tokens
        if mode == "preference":
            longer = list(map(max, rows.answer_tokens, rows.rejected_tokens))
            stats.add_pairs(name, rows.prompt_tokens, rows.answer_tokens, rows.rejected_tokens)
        if mode == "feedback":
            stats.add_feedback(name, (record["label"] for record in rows.records.get("record", [])))
        stats.add_lengths(name, rows.prompt_tokens, longer, rows.turns, rows.texts, labels)
        if rows.images:
            stats.add_images(rows.images)
    if mode == "prompt_only":
        columns = dict.fromkeys(c for table in splits.values() for c in table.column_names)
        stats.reference_columns = [c for c in columns if c not in ("prompt", "images", "tools")]
    return stats.finish()


@dataclass
class _Batch:
    """A mapped batch of a group whose tokens are being counted."""

    group: str
    chunk: list[int]  # its rows' numbers
    part: pa.Table  # its rows
    mapped: Mapped
    counted: Future[list[int]]  # its prompts' then its answers' tokens


def _checked(
    path: _RowByRow | FieldsMapper,
    combined: pa.Table,
    groups: dict[str, list[int]],
    batch_rows: int,
    report: ReportBuilder,
    config: ProcessingConfig,
    count_tokens: TokenCounter,
) -> Iterator[tuple[str, int, Kept]]:
    """Every batch mapped and checked, in order: its group, its row count, what is kept of it.
    A batch's tokens are counted in a thread (the tokenizer and Arrow release the GIL) while the
    next batch is mapped."""
    with ThreadPoolExecutor(max_workers=1) as counter:
        waiting: _Batch | None = None
        for group, indices in groups.items():
            for chunk, part in _parts(combined, indices, batch_rows):
                mapped = path.map(part)
                texts = [*mapped.prompts, *mapped.answers, *mapped.rejected]
                batch = _Batch(group, chunk, part, mapped, counter.submit(count_tokens, texts))
                if waiting is not None:
                    yield waiting.group, len(waiting.chunk), _check(waiting, report, config)
                waiting = batch
        if waiting is not None:
            yield waiting.group, len(waiting.chunk), _check(waiting, report, config)


def _check(batch: _Batch, report: ReportBuilder, config: ProcessingConfig) -> Kept:
    """Check a mapped batch for duplicates and length, report every row's problems, and return
    what is kept of it."""
    mapped, counts, n = batch.mapped, batch.counted.result(), len(batch.mapped.ok)
    prompt_tokens, answer_tokens, rejected_tokens = counts[:n], counts[n : 2 * n], counts[2 * n :]
    if mapped.images:  # the text counted `<start_of_image>`; the model reads the whole frame
        extra = image_tokens(1, GEMMA3_TOKENS_PER_IMAGE) - 1
        prompt_tokens = [
            t + extra * len(i) for t, i in zip(prompt_tokens, mapped.images, strict=True)
        ]
    pairs = bool(mapped.rejected)
    longer = list(map(max, answer_tokens, rejected_tokens)) if pairs else answer_tokens
    slots = dict(zip(mapped.ok, range(len(mapped.ok)), strict=True))
    keep: list[int] = []  # positions in `mapped.ok`
    for i, found in enumerate(mapped.problems):
        slot = slots.get(i)
        problems = list(found)
        if slot is not None:
            problems += report.duplicate_of(*mapped.keys[slot])
            size = prompt_tokens[slot] + longer[slot]
            if size > config.max_length:
                problems.append(("too_long", f"{size} tokens > {config.max_length}"))
        preview = mapped.preview(i) if problems and report.wants_example(problems) else None
        if report.add(batch.chunk[i], problems, preview) and slot is not None:
            keep.append(slot)
    rows = [mapped.ok[slot] for slot in keep]

    def values_of(column: str | None) -> list[Any]:
        if column is None:
            return []
        values = column_values(batch.part, column)
        return [values[i] for i in rows]

    return Kept(
        prompt_tokens=[prompt_tokens[slot] for slot in keep],
        answer_tokens=[answer_tokens[slot] for slot in keep],
        rejected_tokens=[rejected_tokens[slot] for slot in keep] if pairs else [],
        turns=[mapped.turns[slot] for slot in keep],
        texts=[  # a pair's duplicates are the same prompt and the same two answers
            mapped.prompts[slot]
            + mapped.answers[slot]
            + (mapped.rejected[slot] if pairs else "")
            + (mapped.image_keys[slot] if mapped.image_keys else "")
            for slot in keep
        ],
        labels=values_of(config.label_column),
        strata=values_of(config.split.stratify_by),
        records={name: [values[slot] for slot in keep] for name, values in mapped.records.items()},
        images=[mapped.images[slot] for slot in keep] if mapped.images else [],
    )
