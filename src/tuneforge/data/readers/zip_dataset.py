"""A ZIP of images plus exactly one metadata file (CSV, TSV, JSON, JSON Lines or Parquet) whose
values name the images, such as `images/cat.png`.

The metadata is extracted (bounded) to a temporary file and read like an upload. A column is an
image column when some of its values (text, or lists of text) end with an image extension; each
such value must name an image in the archive, relative to the metadata file's folder or to the
archive's root. The images themselves stay in the archive: `ArchiveImages` reads one on demand, so
a dataset of 10,000 photographs costs no memory until they are used.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tuneforge.data.limits import DataFileError, ParseLimits, size_text
from tuneforge.data.readers.archive import Closing, SafeZip
from tuneforge.data.readers.columns import JSON_TEXT_KEY

# Image members (SVG too: named so it can be refused by name, per row, as image_type).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".svg"}
)
METADATA_SUFFIXES = frozenset({".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet"})
ARCHIVE_SUFFIXES = frozenset({".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz", ".zst"})
_IMAGE_REFERENCE = r"(?i)\.(png|jpe?g|gif|webp|bmp|tiff?|svg)$"
_IMAGE_NAME = re.compile(_IMAGE_REFERENCE)
_JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})

ReadMember = Callable[[Path, str], tuple[pa.Table, list[str]]]


class ArchiveImages(Closing):
    """The images of a ZIP dataset, read from the archive when asked for.

    Reads open the archive at `path` once (keep the file until done) and return at most
    `max_image_bytes` per image; `close()` or a `with` block releases it.
    """

    def __init__(
        self,
        path: Path,
        names: frozenset[str],
        base: str,
        columns: tuple[str, ...],
        limits: ParseLimits,
    ) -> None:
        self.path = path
        self.names = names  # every image member of the archive
        self.base = base  # the metadata file's folder, "" at the root
        self.columns = columns  # the metadata columns that name images
        self._limits = limits
        self._zip: SafeZip | None = None

    def resolve(self, reference: str) -> str | None:
        """The archive member a metadata value names, or None if there is none."""
        return resolve(reference, self.names, self.base)

    def get(self, reference: str) -> bytes | None:
        """The bytes of the image that `reference` names, or None if the archive has none."""
        member = self.resolve(reference)
        if member is None:
            return None
        if self._zip is None:
            self._zip = SafeZip(self.path, self._limits)
        return self._zip.read(member, self._limits.max_image_bytes)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


def resolve(reference: str, names: frozenset[str], base: str) -> str | None:
    """Find `reference` among `names`, first relative to `base`, then to the archive's root."""
    path = reference.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    if not path or path.startswith("/") or ".." in path.split("/"):
        return None
    for candidate in (posixpath.join(base, path), path) if base else (path,):
        if candidate in names:
            return candidate
    return None


def read_zip(
    archive: SafeZip, path: Path, read_member: ReadMember
) -> tuple[pa.Table, list[str], ArchiveImages | None]:
    limits = archive.limits
    members = [name for name in archive.members if not _junk(name)]
    by_kind: dict[str, list[str]] = {"image": [], "metadata": [], "archive": [], "other": []}
    for name in members:
        by_kind[_kind(name)].append(name)
    if by_kind["archive"]:
        raise DataFileError(
            f'The archive contains another archive ("{by_kind["archive"][0]}"). Unpack it and '
            "zip its files directly."
        )
    metadata = _one_metadata_file(by_kind["metadata"])
    for name in by_kind["image"]:
        size = archive.members[name].file_size
        if size > limits.max_image_bytes:
            raise DataFileError(
                f'The image "{name}" is {size_text(size)}; the limit is '
                f"{size_text(limits.max_image_bytes)}. Resize it (Gemma sees 896x896 pixels)."
            )
    with tempfile.TemporaryDirectory(prefix="tuneforge-zip-") as directory:
        target = Path(directory) / f"metadata{posixpath.splitext(metadata)[1].lower()}"
        archive.extract(metadata, target, limits.max_member_bytes)
        table, warnings = read_member(target, metadata)
    if by_kind["other"]:
        warnings.append(
            f"{len(by_kind['other']):,} files in the archive are neither images nor the "
            f'metadata file and were ignored (such as "{by_kind["other"][0]}").'
        )
    names = frozenset(by_kind["image"])
    base = posixpath.dirname(metadata)
    columns, used = _image_columns(table, names, base, metadata, warnings)
    if not names:
        return table, warnings, None  # a zipped table
    unused = sorted(names - used)
    if unused:
        warnings.append(
            f"{len(unused):,} of the archive's {len(names):,} images are not named in the "
            f'metadata and will not be used (such as "{unused[0]}").'
        )
    return table, warnings, ArchiveImages(path, names, base, columns, limits)


def _one_metadata_file(candidates: list[str]) -> str:
    if not candidates:
        raise DataFileError(
            "The archive has no metadata file. Add one CSV, JSON Lines or JSON file whose rows "
            "name the images (for example a column `image` holding `images/cat.png`)."
        )
    if len(candidates) > 1:
        shown = ", ".join(f'"{name}"' for name in candidates[:5])
        raise DataFileError(
            f"The archive has {len(candidates):,} metadata files ({shown}); it needs exactly "
            "one. Merge them or remove all but one."
        )
    return candidates[0]


def _image_columns(
    table: pa.Table, names: frozenset[str], base: str, metadata: str, warnings: list[str]
) -> tuple[tuple[str, ...], set[str]]:
    """The columns that name images (at any depth: a path in a conversation's `image_url` part
    counts), and the images they name. Names the archive lacks are a warning (those rows get
    `image_missing` when processed); when none of the names is in the archive, the upload is
    refused, since the paths are then surely written another way."""
    columns: list[str] = []
    used: set[str] = set()
    missing: list[tuple[int, str, str]] = []
    for column_name in table.column_names:
        found = False
        field = table.schema.field(column_name)
        as_json = bool(field.metadata) and field.metadata.get(JSON_TEXT_KEY) == b"json"
        for row, reference in _references(table.column(column_name), as_json):
            found = True
            member = resolve(reference, names, base)
            if member is None:
                missing.append((row, column_name, reference))
            else:
                used.add(member)
        if found:
            columns.append(column_name)
    if missing:
        row, column_name, reference = missing[0]
        where = (
            f'row {row + 1:,}, column "{column_name}" names "{reference}", which is not in the '
            f'archive. Paths are relative to the metadata file ("{metadata}") or to the '
            "archive's root, and upper and lower case differ."
        )
        if not used:
            raise DataFileError(where[0].upper() + where[1:])
        warnings.append(
            f"{len(missing):,} image names in the metadata are not in the archive; those rows "
            f"will be reported as image_missing when processed. The first: {where}"
        )
    return tuple(columns), used


def _references(column: pa.ChunkedArray, as_json: bool) -> Iterable[tuple[int, str]]:
    """(row, value) for each value of a column (text, lists of text, or nested values such as
    conversations, also when the reader kept them as JSON text) that names an image file."""
    offset = 0
    for chunk in column.chunks:
        if as_json:
            for row, text in enumerate(chunk.to_pylist()):
                value = None if text is None else json.loads(text)
                yield from ((offset + row, name) for name in nested_references(value))
            offset += len(chunk)
            continue
        values, rows = chunk, None
        if pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type):
            values, rows = pc.list_flatten(chunk), pc.list_parent_indices(chunk)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            matches = pc.match_substring_regex(values, _IMAGE_REFERENCE).fill_null(False)
            for index in pc.indices_nonzero(matches).to_pylist():
                row = index if rows is None else rows[index].as_py()
                yield offset + row, values[index].as_py()
        elif pa.types.is_nested(values.type):
            for row, value in enumerate(chunk.to_pylist()):
                yield from ((offset + row, text) for text in nested_references(value))
        offset += len(chunk)


def nested_references(value: object) -> Iterable[str]:
    """The strings inside a nested value that name image files (never data: URLs)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, str) and not item.startswith("data:") and _IMAGE_NAME.search(item):
            yield item


def _kind(name: str) -> str:
    suffix = posixpath.splitext(name)[1].lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in METADATA_SUFFIXES:
        return "metadata"
    return "archive" if suffix in ARCHIVE_SUFFIXES else "other"


def _junk(name: str) -> bool:
    """Files that operating systems add to archives on their own."""
    base = posixpath.basename(name)
    return name.startswith("__MACOSX/") or base in _JUNK_NAMES or base.startswith("._")
