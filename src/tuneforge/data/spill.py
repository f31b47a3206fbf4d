"""Image bytes parked on disk while a dataset is processed, so memory holds one row's images at a
time, not the whole dataset's.

Processing keeps every kept record until it splits them; a record's `images` then hold
`SpilledImage` places in an unnamed temporary file (gone when closed or dropped). The output
split is a `SpilledSplit`: its schema is the one `pa.Table.from_pylist` infers for the records,
and `batches()` gives its rows as tables of about `BATCH_BYTES` of images each, read back from the
file, for a Parquet writer to stream; `to_table()` / `to_pylist()` build it whole (small data).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import IO, Any

import pyarrow as pa

BATCH_BYTES = 4 << 20  # image bytes per batch written (Arrow peaks at ~4x while writing it)


@dataclass(frozen=True)
class SpilledImage:
    offset: int
    length: int


class ImageSpill:
    """An append-only temporary file of image bytes."""

    def __init__(self) -> None:
        # kept open for the split's life: closed by close(), or when dropped
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="tuneforge-images-")  # noqa: SIM115
        self.size = 0

    def put(self, data: bytes) -> SpilledImage:
        self._file.seek(self.size)
        self._file.write(data)
        image = SpilledImage(self.size, len(data))
        self.size += len(data)
        return image

    def get(self, image: SpilledImage) -> bytes:
        self._file.seek(image.offset)
        return self._file.read(image.length)

    def close(self) -> None:
        self._file.close()


def spill_images(record: dict[str, Any], spill: ImageSpill) -> None:
    """Move the record's image bytes into `spill` (in place)."""
    if record.get("images"):
        record["images"] = [spill.put(data) for data in record["images"]]


class SpilledSplit:
    """A processed split whose records' images wait in an `ImageSpill`."""

    def __init__(self, records: list[dict[str, Any]], spill: ImageSpill) -> None:
        self.records = records
        self.spill = spill

    @property
    def num_rows(self) -> int:
        return len(self.records)

    @cached_property
    def schema(self) -> pa.Schema:
        """What `pa.Table.from_pylist` infers for the records with their images."""
        placeholders = [_with(record, lambda image: b"") for record in self.records]
        return pa.Table.from_pylist(placeholders).schema

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    def batches(self, max_bytes: int = BATCH_BYTES) -> Iterator[pa.Table]:
        """The rows in order, as tables of at most `max_bytes` of images (or one row)."""
        start, size = 0, 0
        for index, record in enumerate(self.records):
            weight = sum(image.length for image in record.get("images") or ())
            if index > start and size + weight > max_bytes:
                yield self._table(start, index)
                start, size = index, 0
            size += weight
        if start < len(self.records):
            yield self._table(start, len(self.records))

    def _table(self, start: int, end: int) -> pa.Table:
        rows = [_with(record, self.spill.get) for record in self.records[start:end]]
        return pa.Table.from_pylist(rows, schema=self.schema)

    def to_table(self) -> pa.Table:
        return pa.concat_tables(self.batches()) if self.records else pa.table({})

    def to_pylist(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.to_table().to_pylist()
        return rows


def _with(record: dict[str, Any], image: Any) -> dict[str, Any]:
    if not record.get("images"):
        return record
    return {**record, "images": [image(place) for place in record["images"]]}
