"""Datasets in the artifact store as Parquet: one file per split, read a page at a time."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tuneforge.storage import ArtifactStore

SHOWN_CHARS = 2_000


def split_key(prefix: str, stage: str, split: str) -> str:
    return f"{prefix}/{stage}/{split}.parquet"


def write_split(store: ArtifactStore, key: str, table: pa.Table) -> int:
    """Store `table` under `key` (atomically); returns the size in bytes."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=10_000)
    store.write_bytes(key, buffer.getvalue())
    return buffer.tell()


def read_split(store: ArtifactStore, key: str) -> pa.Table:
    with store.open(key) as handle:
        return pq.read_table(handle)


def head(store: ArtifactStore, key: str, count: int) -> pa.Table:
    """The first `count` rows, as stored (for previews that must be exact)."""
    with store.open(key) as handle:
        return pq.ParquetFile(handle).read_row_group(0).slice(0, count)


def _shown(value: Any) -> Any:
    """A value made safe and small for a preview: long text cut, bytes summarised."""
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return value[:SHOWN_CHARS] + f"… ({len(value):,} characters)"
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


def read_page(
    store: ArtifactStore, key: str, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Rows `offset`..`offset+limit` and the row count, reading only the row groups needed."""
    with store.open(key) as handle:
        parquet = pq.ParquetFile(handle)
        total = parquet.metadata.num_rows
        rows: list[dict[str, Any]] = []
        start = 0
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if start + size > offset and len(rows) < limit:
                table = parquet.read_row_group(group)
                first = max(offset - start, 0)
                rows += table.slice(first, limit - len(rows)).to_pylist()
            start += size
            if len(rows) >= limit:
                break
    return [_shown(row) for row in rows], total
