"""Reading a GGUF file's metadata and tensor list without its tensors, and the error every GGUF
export step raises.

`gguf.GGUFReader` reads the same but takes about 20 s for Gemma's 262,144-token vocabulary (it
makes a numpy view per array element); `read_header` takes a fraction of a second.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

_V = gguf.GGUFValueType
_SCALAR_FORMATS = {_V.UINT8: "<B", _V.INT8: "<b", _V.UINT16: "<H", _V.INT16: "<h",
                   _V.UINT32: "<I", _V.INT32: "<i", _V.FLOAT32: "<f", _V.BOOL: "<?",
                   _V.UINT64: "<Q", _V.INT64: "<q", _V.FLOAT64: "<d"}  # fmt: skip


class GgufConversionError(ValueError):
    """A model that cannot become a GGUF file; the message says why, for a person."""


@dataclass(frozen=True)
class GgufHeader:
    """A GGUF file's metadata (arrays as lists) and its tensors' names, shapes and types."""

    fields: dict[str, Any]
    #: `(name, shape, gguf.GGMLQuantizationType value)`; shapes in llama.cpp's order.
    tensors: list[tuple[str, tuple[int, ...], int]]


def read_header(path: Path) -> GgufHeader:
    """The metadata and tensor list of the GGUF file at `path` (little-endian, version 2+)."""
    with (
        Path(path).open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m,
    ):
        if len(m) < 24 or m[:4] != b"GGUF":
            raise GgufConversionError(f"{Path(path).name} is not a GGUF file.")
        _version, n_tensors, n_fields = struct.unpack_from("<IQQ", m, 4)
        position = 24
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key, position = _read_string(m, position)
            (kind,) = struct.unpack_from("<I", m, position)
            fields[key], position = _read_value(m, position + 4, kind)
        tensors = []
        for _ in range(n_tensors):
            name, position = _read_string(m, position)
            (dims,) = struct.unpack_from("<I", m, position)
            shape = struct.unpack_from(f"<{dims}Q", m, position + 4)
            (qtype,) = struct.unpack_from("<I", m, position + 4 + 8 * dims)
            position += 4 + 8 * dims + 4 + 8  # the shape, the type and the data offset
            tensors.append((name, tuple(shape), qtype))
    return GgufHeader(fields, tensors)


def _read_string(m: mmap.mmap, position: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", m, position)
    start = position + 8
    return m[start : start + length].decode("utf-8", errors="replace"), start + length


def _read_value(m: mmap.mmap, position: int, kind: int) -> tuple[Any, int]:
    if kind == _V.STRING:
        return _read_string(m, position)
    if kind != _V.ARRAY:
        scalar = struct.Struct(_SCALAR_FORMATS[_V(kind)])
        return scalar.unpack_from(m, position)[0], position + scalar.size
    item_kind, count = struct.unpack_from("<IQ", m, position)
    position += 12
    if item_kind in (_V.STRING, _V.ARRAY):
        items = []
        for _ in range(count):
            item, position = _read_value(m, position, item_kind)
            items.append(item)
        return items, position
    dtype = np.dtype(_SCALAR_FORMATS[_V(item_kind)].replace("?", "b1"))
    values = np.frombuffer(m, dtype=dtype, count=count, offset=position).tolist()
    return values, position + dtype.itemsize * count
