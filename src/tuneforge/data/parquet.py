"""Datasets in the artifact store as Parquet: one file per split, read a page at a time."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tuneforge.data.spill import SpilledSplit
from tuneforge.storage import ArtifactStore

SHOWN_CHARS = 2_000
THUMBNAIL_SIZE = 96  # pixels: images in a page of rows
IMAGE_ROW_GROUP = 256  # rows per row group of a split with images (a page reads one group)


def split_key(prefix: str, stage: str, split: str) -> str:
    return f"{prefix}/{stage}/{split}.parquet"


def write_split(store: ArtifactStore, key: str, table: pa.Table | SpilledSplit) -> int:
    """Store `table` under `key` (atomically); returns the size in bytes. A split whose images
    wait on disk is written a batch at a time through a temporary file, never whole in memory."""
    if isinstance(table, SpilledSplit):
        with tempfile.TemporaryDirectory(prefix="tuneforge-split-") as directory:
            path = Path(directory) / "split.parquet"
            with pq.ParquetWriter(path, table.schema, compression="zstd") as writer:
                for batch in table.batches():
                    writer.write_table(batch, row_group_size=IMAGE_ROW_GROUP)
            store.put_file(key, path)
            return path.stat().st_size
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


def _shown(value: Any, thumbnails: bool = False) -> Any:
    """A value made safe and small for a preview: long text cut, bytes summarised (with
    `thumbnails`, an image's bytes become a small JPEG `data:` URL instead)."""
    if isinstance(value, bytes):
        return _bytes_shown(value, thumbnails)
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        if thumbnails and value.startswith("data:image/"):
            return _data_url_shown(value)
        return value[:SHOWN_CHARS] + f"… ({len(value):,} characters)"
    if isinstance(value, list):
        return [_shown(v, thumbnails) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v, thumbnails) for k, v in value.items()}
    return value


def _bytes_shown(value: bytes, thumbnails: bool) -> str:
    from tuneforge.data.images import ImageRejected, sniff_format, thumbnail

    if thumbnails and sniff_format(value) is not None:
        try:
            return thumbnail(value, THUMBNAIL_SIZE)
        except ImageRejected:
            pass
    return f"<{len(value):,} bytes>"


def _data_url_shown(value: str) -> str:
    import base64
    import binascii

    try:
        data = base64.b64decode(value.partition(",")[2], validate=True)
    except (binascii.Error, ValueError):
        return value[:SHOWN_CHARS] + f"… ({len(value):,} characters)"
    return _bytes_shown(data, True)


def read_page(
    store: ArtifactStore, key: str, offset: int, limit: int, *, thumbnails: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """Rows `offset`..`offset+limit` and the row count, reading only the row groups needed.
    With `thumbnails`, images appear as small JPEG `data:` URLs instead of their byte count."""
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
    return [_shown(row, thumbnails) for row in rows], total
