"""How much an uploaded data file may hold, and the error that says which limit it broke.

The defaults fit the smallest server we support (2 cores, 24 GB of RAM) while accepting every
dataset that is useful for fine-tuning a Gemma model: the largest Gemma context is 128k tokens,
about 512 KB of text, so a 1 MiB value is already larger than anything a model can learn from.
Every reader checks these limits *while* it reads, so a hostile file is refused after reading at
most one batch of rows (or an archive's directory) past the limit, never after loading it whole.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.errors import InvalidInput

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


class ParseLimits(BaseModel):
    """Bounds applied while reading one uploaded file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_rows: int = Field(
        default=1_000_000,
        gt=0,
        description="Most rows (examples) in one file. A million examples is far more than a "
        "fine-tuning run on one machine uses; larger sets should be sampled first.",
    )
    max_columns: int = Field(
        default=1_000,
        gt=0,
        description="Most columns (fields) in one table. Real datasets have a handful; thousands "
        "of columns mean a mis-parsed or machine-generated file.",
    )
    max_column_name_bytes: int = Field(
        default=256,
        gt=0,
        description="Longest column name, in UTF-8 bytes. A longer 'name' is almost always a "
        "data row read as the header.",
    )
    max_cell_bytes: int = Field(
        default=1 * MIB,
        gt=0,
        description="Largest single text value (a cell, or any string inside a nested value), "
        "in UTF-8 bytes. 1 MiB is about 250k tokens, twice the largest Gemma context.",
    )
    max_line_bytes: int = Field(
        default=8 * MIB,
        gt=0,
        description="Largest single record before it is parsed: a line of a CSV, TSV, JSON Lines "
        "or TXT file, or one element of a JSON list. Bounds the memory one row can take "
        "(counted in characters while reading, then checked in UTF-8 bytes).",
    )
    max_json_depth: int = Field(
        default=64,
        gt=0,
        description="Deepest nesting of lists and objects in JSON (and of nested Parquet types). "
        "Conversations need about 5 levels; the check runs before parsing, without recursion.",
    )
    max_archive_members: int = Field(
        default=100_000,
        gt=0,
        description="Most files in a ZIP archive (or parts in an .xlsx workbook). Checked from the "
        "archive's directory record before the directory itself is loaded.",
    )
    max_member_bytes: int = Field(
        default=2 * GIB,
        gt=0,
        description="Largest decompressed size of one archive member (e.g. the metadata file of a "
        "ZIP of images); the same as the largest upload accepted uncompressed.",
    )
    max_decompressed_bytes: int = Field(
        default=4 * GIB,
        gt=0,
        description="Largest total decompressed size of all members of one archive. Checked from "
        "the declared sizes before anything is decompressed, then counted while streaming.",
    )
    max_compression_ratio: float = Field(
        default=200.0,
        gt=1.0,
        description="Largest decompressed/compressed size ratio of an archive member larger than "
        "1 MiB. Text compresses about 3-20x and images about 1x; a higher ratio is the mark of "
        "a compression bomb.",
    )
    max_image_bytes: int = Field(
        default=20 * MIB,
        gt=0,
        description="Largest image file (in a ZIP of images, a data: URL, a Parquet image "
        "column or a chat turn). Gemma's vision encoder sees 896x896 pixels; a 20 MiB file is "
        "already a very large photograph.",
    )
    max_image_pixels: int = Field(
        default=50_000_000,
        gt=0,
        description="Most pixels (width x height) in one image, read from its header before "
        "anything is decoded, so a decompression bomb (a small file declaring a huge image) is "
        "refused without decoding it. 50 MP admits a 48 MP phone photo (8064x6048); decoding "
        "one to check it takes at most 200 MB, once. Gemma sees 896x896 (0.8 MP) anyway.",
    )
    max_spreadsheet_parts_bytes: int = Field(
        default=256 * MIB,
        gt=0,
        description="Largest decompressed size of each .xlsx part that is loaded whole (shared "
        "strings, styles, workbook). Worksheets themselves are streamed and only bounded by "
        "`max_member_bytes`.",
    )

    @property
    def max_data_url_bytes(self) -> int:
        """Longest text that may hold an image as a base64 `data:image/...` URL: one image of
        `max_image_bytes` (base64 takes 4 bytes per 3) and its header. Such a text is bounded
        as an image, not by `max_cell_bytes`."""
        return self.max_image_bytes * 4 // 3 + 1024


def inline_image(text: str, limits: ParseLimits) -> bool:
    """Whether `text` is an image's data: URL within the image limit."""
    return text.startswith("data:image/") and len(text) <= limits.max_data_url_bytes


DEFAULT_LIMITS = ParseLimits()


class DataFileError(InvalidInput):
    """An uploaded data file cannot be read. The message says what is wrong and how to fix it."""


def size_text(n: float) -> str:
    """A byte count for people: '512 bytes', '1 MiB', '2.4 GiB'."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale:
            value = n / scale
            precise = value < 100 and not value.is_integer()
            return f"{value:,.1f} {unit}" if precise else f"{value:,.0f} {unit}"
    return f"{int(n):,} bytes"
