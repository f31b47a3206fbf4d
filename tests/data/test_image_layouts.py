"""The image layouts people bring, recognised with no input and processed into records whose image
parts stand in place and whose `images` column holds the bytes in order; every image problem is
a row problem with its code; image tokens count in the lengths."""

from __future__ import annotations

import base64
import io
import json
import random
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from tokenizers import Tokenizer

from tests.models import models_cache_dir
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.formats import guess_mapping
from tuneforge.data.limits import DataFileError
from tuneforge.data.mapping import MappingSpec, RowMapper
from tuneforge.data.process import Processed, process, records
from tuneforge.data.readers import ReadResult, read_table
from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer

Counter = Callable[[Sequence[str]], list[int]]
SVG = b"<svg><image href='/etc/x'/></svg>"
SVG_URL = "data:image/svg+xml;base64," + base64.b64encode(SVG).decode()
IMAGE = {"type": "image"}
IMAGE_TOKENS = 260  # Gemma 3: 256 soft tokens and 4 around them


@pytest.fixture(scope="module")
def counter() -> Counter:
    tokenizer: Tokenizer = gemma_tokenizer(models_cache_dir())
    return lambda texts: count_tokens(texts, tokenizer)


def image(colour: str, size: tuple[int, int] = (24, 16), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def zipped(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def run(
    result: ReadResult, counter: Counter, mapping: MappingSpec | None = None
) -> tuple[str, Processed]:
    """Recognise the format (or use `mapping`) and process every row, without a split."""
    guess = guess_mapping(result.table.column_names, records(result.table.slice(0, 50)))
    spec = mapping or guess.mapping
    assert spec is not None, guess.reason
    config = ProcessingConfig(mapping=spec, split={"mode": "none"})
    try:
        resolver = result.images.get if result.images is not None else None
        return guess.format, process({"train": result.table}, config, counter, resolver)
    finally:
        if result.images is not None:
            result.images.close()


def rows_of(processed: Processed) -> list[dict[str, Any]]:
    return processed.splits["train"].to_pylist()


def problems(processed: Processed) -> dict[str, int]:
    return {p.code: p.count for p in processed.report.problems}


def test_a_zip_of_images_with_a_csv_of_captions(tmp_path: Path, counter: Counter) -> None:
    red, blue = image("red"), image("blue", (300, 200), "JPEG")
    path = zipped(
        tmp_path / "captions.zip",
        {
            "pics/red.png": red,
            "pics/blue.jpg": blue,
            "captions.csv": "file_name,text\npics/red.png,A red square.\npics/blue.jpg,Blue.\n",
        },
    )
    kind, processed = run(read_table(path, "captions.zip"), counter)
    assert kind == "image_caption"
    first, second = rows_of(processed)
    assert first["images"] == [red] and second["images"] == [blue]
    assert first["messages"][0]["content"] == [
        {"type": "image", "text": None},
        {"type": "text", "text": "Describe this image."},
    ]
    assert first["messages"][1]["content"][0]["text"] == "A red square."
    images = processed.stats.images
    assert images is not None
    assert (images.total, images.rows_with_images, images.per_row) == (2, 2, {1: 2})
    assert images.formats == {"PNG": 1, "JPEG": 1}
    assert (images.pixels.min, images.pixels.max) == (24 * 16, 300 * 200)
    assert (images.width.max, images.height.min) == (300, 16)
    assert images.bytes.max == max(len(red), len(blue))
    assert images.tokens_per_image == IMAGE_TOKENS


def test_image_tokens_count_in_the_lengths(tmp_path: Path, counter: Counter) -> None:
    table = pa.table(
        {"image": [[image("red")], [image("red"), image("blue")]], "caption": ["Red.", "Two."]}
    )
    path = tmp_path / "two.parquet"
    pq.write_table(table, path)
    _, processed = run(read_table(path, "two.parquet"), counter)
    rendered = ["<start_of_image>Describe this image.", "<start_of_image><start_of_image>Desc"]
    assert rendered[0]  # the text alone counts each `<start_of_image>` as one token
    prompts = [r["messages"][0]["content"] for r in rows_of(processed)]
    assert [sum(p["type"] == "image" for p in parts) for parts in prompts] == [1, 2]
    text_only = ProcessingConfig(
        mapping=MappingSpec(
            user={"template": "Describe this image."}, assistant={"column": "caption"}
        ),
        split={"mode": "none"},
    )
    plain = process({"train": table}, text_only, counter)
    stats, base = processed.stats, plain.stats
    # each image adds its frame minus the `<start_of_image>` the text already counted
    assert stats.prompt_tokens.min == base.prompt_tokens.min + IMAGE_TOKENS
    assert stats.prompt_tokens.max == base.prompt_tokens.max + 2 * IMAGE_TOKENS
    assert stats.total_tokens.max == base.total_tokens.max + 2 * IMAGE_TOKENS
    assert stats.images is not None and stats.images.per_row == {1: 1, 2: 1}
    assert plain.stats.images is None and "images" not in plain.stats.model_dump()


def test_max_length_counts_the_images(tmp_path: Path, counter: Counter) -> None:
    table = pa.table({"image": [image("red")], "caption": ["Red."]})
    path = tmp_path / "one.parquet"
    pq.write_table(table, path)
    result = read_table(path, "one.parquet")
    spec = guess_mapping(table.column_names, records(table)).mapping
    assert spec is not None
    config = ProcessingConfig(mapping=spec, split={"mode": "none"}, max_length=200)
    processed = process({"train": result.table}, config, counter)
    assert problems(processed) == {"too_long": 1}


def test_a_zip_with_jsonl_conversations_naming_images(tmp_path: Path, counter: Counter) -> None:
    red, blue = image("red"), image("blue")
    rows = [
        {  # LLaMA-Factory: the n-th <image> is the n-th image
            "messages": [
                {"role": "user", "content": "<image>Which is red, this or <image>?"},
                {"role": "assistant", "content": "The first."},
            ],
            "images": ["img/red.png", "img/blue.png"],
        },
        {
            "messages": [
                {"role": "user", "content": "What colour? <image>"},
                {"role": "assistant", "content": "Blue."},
            ],
            "images": ["img/blue.png"],
        },
    ]
    path = zipped(
        tmp_path / "chats.zip",
        {"data/train.jsonl": jsonl(rows), "data/img/red.png": red, "data/img/blue.png": blue},
    )
    kind, processed = run(read_table(path, "chats.zip"), counter)
    assert kind == "messages"
    first, second = rows_of(processed)
    assert first["images"] == [red, blue] and second["images"] == [blue]
    assert [(p["type"], p["text"]) for p in first["messages"][0]["content"]] == [
        ("image", None),
        ("text", "Which is red, this or "),
        ("image", None),
        ("text", "?"),
    ]
    assert [p["type"] for p in second["messages"][0]["content"]] == ["text", "image"]


def test_missing_and_surplus_images_are_row_problems(tmp_path: Path, counter: Counter) -> None:
    def row(text: str, images: list[str] | None) -> dict[str, Any]:
        turns = [{"role": "user", "content": text}, {"role": "assistant", "content": "Yes."}]
        return {"conversations": turns, "images": images}

    rows = [
        row("<image><image>Same?", ["a.png", "a.png"]),  # fine: one image used twice
        row("<image><image>Same?", ["a.png"]),  # one image for two places
        row("<image>Same?", ["a.png", "b.png"]),  # one image left over
        row("<image>Is it there?", ["gone.png"]),  # not in the archive
        row("Look.", None),  # no image at all
        row("<image>Broken?", ["broken.png"]),
        row("<image>Far?", ["https://example.com/a.png"]),
    ]
    path = zipped(
        tmp_path / "lf.zip",
        {
            "meta.jsonl": jsonl(rows),
            "a.png": image("red"),
            "b.png": image("blue"),
            "broken.png": image("red")[:60],
        },
    )
    result = read_table(path, "lf.zip")
    assert any("image_missing" in w and "gone.png" in w for w in result.warnings)
    _, processed = run(result, counter)
    assert processed.report.rows_out == 1
    assert problems(processed) == {
        "image_missing": 3,
        "image_surplus": 1,
        "image_undecodable": 1,
        "image_url": 1,
    }
    details = {
        e.detail for p in processed.report.problems for e in p.examples if p.code != "image_url"
    }
    assert "2 image places in the text but 1 image in column images" in details
    assert "2 images in column images but 1 image place (<image> or an image part) in the text" in (
        details
    )
    assert "image 1 (column images): gone.png is not a file in the uploaded ZIP" in details
    assert "column images: no image" in details
    url = next(p for p in processed.report.problems if p.code == "image_url")
    assert "never fetched" in url.examples[0].detail


def test_openai_image_url_parts_with_data_urls(tmp_path: Path, counter: Counter) -> None:
    red = image("red")
    rows = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What colour is this?"},
                        {"type": "image_url", "image_url": {"url": data_url(red)}},
                    ],
                },
                {"role": "assistant", "content": "Red."},
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}
                    ],
                },
                {"role": "assistant", "content": "?"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": SVG_URL}]},
                {"role": "assistant", "content": "An SVG."},
            ]
        },
    ]  # fmt: skip
    path = tmp_path / "openai.jsonl"
    path.write_text(jsonl(rows))
    kind, processed = run(read_table(path, "openai.jsonl"), counter)
    assert kind == "messages"
    (kept,) = rows_of(processed)
    assert kept["images"] == [red]
    assert [p["type"] for p in kept["messages"][0]["content"]] == ["text", "image"]
    assert problems(processed) == {"image_url": 1, "image_type": 1}


def test_image_url_parts_naming_files_in_the_zip(tmp_path: Path, counter: Counter) -> None:
    red = image("red")
    rows = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "photos/red.png"}},
                        {"type": "text", "text": "Colour?"},
                    ],
                },
                {"role": "assistant", "content": [{"type": "text", "text": "Red."}]},
            ]
        }
    ]
    path = zipped(tmp_path / "o.zip", {"chat.jsonl": jsonl(rows), "photos/red.png": red})
    result = read_table(path, "o.zip")
    assert not any("not named" in w for w in result.warnings), result.warnings
    _, processed = run(result, counter)
    assert rows_of(processed)[0]["images"] == [red]


def test_a_large_data_url_is_one_image_not_a_too_long_text(
    tmp_path: Path, counter: Counter
) -> None:
    noisy = Image.frombytes("RGB", (700, 700), random.Random(7).randbytes(700 * 700 * 3))
    out = io.BytesIO()
    noisy.save(out, "PNG")
    big = out.getvalue()
    assert len(big) > 1 << 20  # beyond the 1 MiB limit of a text value
    row = {"image": data_url(big), "caption": "Noise."}
    path = tmp_path / "big.jsonl"
    path.write_text(jsonl([row]))
    _, processed = run(read_table(path, "big.jsonl"), counter)
    assert rows_of(processed)[0]["images"] == [big]
    with pytest.raises(DataFileError, match="limit"):
        path.write_text(jsonl([{"caption": "x" * (2 << 20)}]))
        read_table(path, "big.jsonl")


def test_parquet_image_columns_structs_and_bytes(tmp_path: Path, counter: Counter) -> None:
    red, blue = image("red"), image("blue")
    table = pa.table(
        {
            "image": [
                {"bytes": red, "path": "red.png"},
                {"bytes": None, "path": "elsewhere/blue.png"},  # a path outside the upload
                {"bytes": blue, "path": None},
            ],
            "label": ["red", "blue", "blue"],
        }
    )
    path = tmp_path / "hf.parquet"
    pq.write_table(table, path)
    kind, processed = run(read_table(path, "hf.parquet"), counter)
    assert kind == "image_label"
    assert [r["images"] for r in rows_of(processed)] == [[red], [blue]]
    assert problems(processed) == {"image_missing": 1}
    raw = pa.table({"picture": [red, blue], "description": ["Red.", "Blue."]})
    pq.write_table(raw, path)
    kind, processed = run(read_table(path, "hf.parquet"), counter)
    assert kind == "image_caption"
    assert [r["images"] for r in rows_of(processed)] == [[red], [blue]]


def test_hf_messages_with_image_parts_and_an_images_column(counter: Counter) -> None:
    red, blue = image("red"), image("blue")
    turns = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}, IMAGE]},
        {"role": "assistant", "content": [{"type": "text", "text": "Red, blue."}]},
    ]  # fmt: skip
    table = pa.table({"messages": [turns], "images": [[{"bytes": red}, {"bytes": blue}]]})
    guess = guess_mapping(table.column_names, records(table))
    assert guess.mapping is not None and guess.mapping.image_column == "images"
    result = RowMapper(guess.mapping, table.column_names).map(records(table)[0])
    assert result.record is not None and result.record["images"] == [red, blue]
    assert [(f.width, f.height) for f in result.images] == [(24, 16), (24, 16)]


def test_an_oversized_image_is_a_row_problem(tmp_path: Path, counter: Counter) -> None:
    table = pa.table({"image": [image("red", (9000, 6000), "JPEG")], "caption": ["Big."]})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path)
    _, processed = run(read_table(path, "big.parquet"), counter)
    assert problems(processed) == {"image_too_large": 1}
    detail = processed.report.problems[0].examples[0].detail
    assert "9,000 x 6,000 pixels" in detail and "the limit is 50 MP" in detail
