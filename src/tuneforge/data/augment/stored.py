"""Augmentation of a stored processed dataset into a new one.

The new train split is the source's train rows, in their order and at their positions, then
their variants, each naming its source row's position (`augmented_from`) and its methods
(`augmentation`); it is read and written a batch at a time, so memory holds one batch and its
variants. With an LLM method a batch is the rows of `LLM_BATCH_VARIANTS` variants (64 rows
with one copy each, 6 with ten), whose requests go to the model together (`llm.Rewriter`), so
progress moves every few dozen requests. Every other split (the test split) is copied byte
for byte, and the copy is checked against its source before the dataset is called ready:
nothing made from training rows can reach it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tuneforge.data import parquet
from tuneforge.data.augment.llm import Rewriter
from tuneforge.data.augment.measure import AugmentedStats
from tuneforge.data.augment.records import FROM, METHODS, original, variants_of_rows
from tuneforge.data.augment.spec import AugmentSpec
from tuneforge.errors import InvalidInput
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

BATCH_ROWS = 256
LLM_BATCH_VARIANTS = 64  # variants whose LLM requests are sent together (progress per batch)
IMAGE_BATCH_ROWS = 16  # source rows read at a time when they have images
FLUSH_BYTES = 32 << 20  # variants' image bytes held before they are written
TRAIN = "train"
Fields = dict[str, Any]


def lineage_schema(schema: pa.Schema) -> pa.Schema:
    """The source split's schema with the lineage columns (kept as they are when present)."""
    for name, kind in ((FROM, pa.int64()), (METHODS, pa.string())):
        if schema.get_field_index(name) == -1:
            schema = schema.append(pa.field(name, kind))
    return schema


def _digest(store: ArtifactStore, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in store.iter_chunks(key):
        digest.update(chunk)
    return digest.hexdigest()


def copy_split(store: ArtifactStore, source: str, target: str) -> int:
    """Copy a split byte for byte and check the copy; its size."""
    with store.open(source) as handle:
        store.write_stream(target, handle)
    if _digest(store, source) != _digest(store, target):
        raise RuntimeError(f"The copy of {source} differs from it; nothing was published.")
    return store.size(target)


def _image_bytes(rows: list[dict[str, Any]]) -> int:
    return sum(len(data) for row in rows for data in row.get("images") or ())


def _train(
    store: ArtifactStore,
    key: str,
    spec: AugmentSpec,
    stats: AugmentedStats,
    out: Path,
    progress: Callable[[float], None] | None,
    rewriter: Rewriter | None = None,
) -> tuple[int, int]:
    """Write the augmented train split to `out`: the source's rows, then their variants
    (parked in a side file meanwhile); the source's row count and the variants made. Rows with
    images are read `IMAGE_BATCH_ROWS` at a time, and variants are written once they hold
    `FLUSH_BYTES` of images, so memory holds a few rows' images, not a batch's copies."""
    side = out.with_name("variants.parquet")
    with store.open(key) as handle:
        reader = pq.ParquetFile(handle)
        schema = lineage_schema(reader.schema_arrow)
        size = IMAGE_BATCH_ROWS if "images" in schema.names else BATCH_ROWS
        together = bool(spec.llm_methods())  # the batch's rows asked together, else row by row
        if together:
            size = min(size, max(1, LLM_BATCH_VARIANTS // spec.copies))
        total, done, made = reader.metadata.num_rows, 0, 0
        with pq.ParquetWriter(out, schema, compression="zstd") as writer:
            with pq.ParquetWriter(side, schema, compression="zstd") as parked:
                for batch in reader.iter_batches(batch_size=size):
                    rows = batch.to_pylist()
                    originals = [original(row) for row in rows]
                    writer.write_table(pa.Table.from_pylist(originals, schema=schema))
                    stats.add(TRAIN, originals)
                    waiting: list[dict[str, Any]] = []
                    groups = [rows] if together else [[row] for row in rows]
                    for first, group in zip(
                        range(done, done + len(rows), len(groups[0])), groups, strict=True
                    ):
                        waiting += variants_of_rows(group, first, spec, rewriter)
                        if len(waiting) >= BATCH_ROWS or _image_bytes(waiting) > FLUSH_BYTES:
                            parked.write_table(pa.Table.from_pylist(waiting, schema=schema))
                            stats.add(TRAIN, waiting)
                            made, waiting = made + len(waiting), []
                    if waiting:
                        parked.write_table(pa.Table.from_pylist(waiting, schema=schema))
                        stats.add(TRAIN, waiting)
                        made += len(waiting)
                    done += len(rows)
                    if progress is not None:
                        progress(0.9 * done / max(total, 1))
            with pq.ParquetFile(side) as variants_file:
                for part in variants_file.iter_batches(batch_size=size):
                    writer.write_batch(part)
    return total, made


def augment_stored(
    store: ArtifactStore,
    settings: Settings,
    source: tuple[str, dict[str, int], dict[str, Any]],
    prefix: str,
    spec: AugmentSpec,
    progress: Callable[[float], None] | None = None,
    rewriter: Rewriter | None = None,
) -> Fields:
    """Augment the processed dataset `source` (its prefix, splits and processing config) into
    a new one under `prefix` (`rewriter` asks the model for the LLM methods); the new record's
    fields."""
    from tuneforge.models.tokenizer import gemma_tokenizer

    source_prefix, splits, config = source
    if TRAIN not in splits:
        raise InvalidInput(
            f"The dataset has no train split to augment (it has {', '.join(splits) or 'none'})."
        )
    stats = AugmentedStats(gemma_tokenizer(settings.models_dir), config)
    with tempfile.TemporaryDirectory(prefix="tuneforge-augment-") as directory:
        out = Path(directory) / "train.parquet"
        key = parquet.split_key(source_prefix, "processed", TRAIN)
        rows_in, made = _train(store, key, spec, stats, out, progress, rewriter)
        new_splits = {TRAIN: rows_in + made}
        size = out.stat().st_size
        store.put_file(parquet.split_key(prefix, "processed", TRAIN), out)
        with pq.ParquetFile(out) as written:
            columns = [{"name": f.name, "type": str(f.type)} for f in written.schema_arrow]
    for split in splits:
        if split == TRAIN:
            continue
        source_key = parquet.split_key(source_prefix, "processed", split)
        size += copy_split(store, source_key, parquet.split_key(prefix, "processed", split))
        with store.open(source_key) as handle:
            copied = pq.ParquetFile(handle)
            new_splits[split] = copied.metadata.num_rows
            for batch in copied.iter_batches(batch_size=BATCH_ROWS):
                stats.add(split, batch.to_pylist())
    if progress is not None:
        progress(1.0)
    return {
        "stats": stats.finish().model_dump(mode="json"),
        "splits": new_splits,
        "rows": sum(new_splits.values()),
        "columns": columns,
        "size_bytes": size,
        "status": "ready",
        "warnings": [f"{made:,} variants made from {rows_in:,} train rows."]
        + (rewriter.summary() if rewriter is not None else []),
    }
