"""Datasets in the artifact store: where a dataset's files live, how its raw and processed
splits are written and read back, and what its record says about them.

Both the web process (small uploads and processing, previews) and the dataset workers (imports,
large processing) work through these functions; they return the record's fields
(`Dataset.fill`) instead of touching a database row, so they work without a server.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneforge.data import hub, parquet
from tuneforge.data.config import DatasetImport, ProcessingConfig
from tuneforge.data.formats import guess_mapping
from tuneforge.data.image_refs import ImageResolver
from tuneforge.data.process import process, records, split_records
from tuneforge.data.readers import read_table
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore, artifact_prefix

SAMPLE_ROWS = 50  # rows looked at to recognise the format
Fields = dict[str, Any]


def dataset_prefix(owner_id: str, dataset_id: str) -> str:
    return artifact_prefix(owner_id, "datasets", dataset_id)


def _columns(table: Any) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in table.schema]


def store_raw(
    store: ArtifactStore, prefix: str, tables: dict[str, Any], warnings: list[str]
) -> Fields:
    """Store a raw dataset's splits as Parquet; its record's fields (format guess, columns...)."""
    first = next(iter(tables.values()))
    guess = guess_mapping(first.column_names, records(first.slice(0, SAMPLE_ROWS)))
    splits = {name: table.num_rows for name, table in tables.items()}
    return {
        "format": guess.format if guess.sure else None,
        "mapping": guess.mapping.model_dump(mode="json", exclude_none=True)
        if guess.mapping
        else None,
        "warnings": [*warnings, *([] if guess.sure else [guess.reason])],
        "columns": _columns(first),
        "splits": splits,
        "rows": sum(splits.values()),
        "size_bytes": sum(
            parquet.write_split(store, parquet.split_key(prefix, "raw", name), table)
            for name, table in tables.items()
        ),
        "status": "ready",
    }


def import_raw(
    store: ArtifactStore,
    settings: Settings,
    prefix: str,
    request: DatasetImport,
    max_bytes: int | None = None,
    bounded: Callable[[int], None] | None = None,
) -> Fields:
    """Bring in a Hugging Face dataset or a file on the server; the raw record's fields. A Hub
    download may take at most `max_bytes` (None: no bound), or less once the Hub tells its size
    (`bounded` hears it: `hub.load_tables`)."""
    path = Path(request.path)
    if request.source == "server_path" and path.is_file():
        result = read_table(path, path.name)
        if result.images is not None:
            result.images.close()
            store.put_file(f"{prefix}/source/original.zip", path)
        return store_raw(store, prefix, {"train": result.table}, result.warnings)
    cache = settings.data_dir / "cache" / "huggingface"
    tables = hub.load_tables(request, cache, max_bytes, bounded)
    return store_raw(store, prefix, tables, [])


def _raw_tables(store: ArtifactStore, prefix: str, splits: dict[str, int]) -> dict[str, Any]:
    return {s: parquet.read_split(store, parquet.split_key(prefix, "raw", s)) for s in splits}


@contextmanager
def source_images(
    store: ArtifactStore, settings: Settings, prefix: str
) -> Iterator[ImageResolver | None]:
    """For a ZIP dataset, its images (from a local copy of the stored archive); else None."""
    archives = [k for k in store.list(f"{prefix}/source") if k.endswith(".zip")]
    if not archives:
        yield None
        return
    local = settings.data_dir / "cache" / "sources" / prefix / "original.zip"
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_suffix(".part")
        with store.open(archives[0]) as source, partial.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        partial.replace(local)
    images = read_table(local, "original.zip").images
    if images is None:
        yield None
        return
    with images:
        yield images.get


def process_raw(
    store: ArtifactStore,
    settings: Settings,
    source: tuple[str, dict[str, int]],
    prefix: str,
    config: ProcessingConfig,
    progress: Callable[[float], None] | None = None,
) -> Fields:
    """Process the raw dataset `source` (its prefix and splits) into conversations stored
    under `prefix`; the processed record's fields, `failed` with why when nothing usable
    came out or the config says to fail on problems."""
    from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer

    source_prefix, source_splits = source
    tokenizer = gemma_tokenizer(settings.models_dir)
    with source_images(store, settings, source_prefix) as images:
        result = process(
            _raw_tables(store, source_prefix, source_splits),
            config,
            lambda texts: count_tokens(texts, tokenizer),
            images,
            progress,
        )
    report = result.report.model_dump(mode="json")
    if config.on_problem == "fail" and result.report.problems:
        return {
            "report": report,
            "status": "failed",
            "error": f"{result.report.dropped} of {result.report.rows_in} rows have problems; "
            "see the report, fix the data or the mapping, or choose to drop them.",
        }
    if not result.splits:
        return {
            "report": report,
            "status": "failed",
            "error": "No row survived validation; see the report.",
        }
    size = 0
    try:
        for split, table in result.splits.items():
            size += parquet.write_split(store, parquet.split_key(prefix, "processed", split), table)
    except BaseException:
        store.delete(prefix)  # no split of a half-stored dataset stays behind
        raise
    splits = {name: table.num_rows for name, table in result.splits.items()}
    return {
        "report": report,
        "stats": result.stats.model_dump(mode="json"),
        "splits": splits,
        "rows": sum(splits.values()),
        "columns": _columns(next(iter(result.splits.values()))),
        "size_bytes": size,
        "status": "ready",
    }


def processed_records(
    store: ArtifactStore, prefix: str, splits: dict[str, int], split: str
) -> list[dict[str, Any]]:
    """Every row of a processed dataset's split, as records (empty if it has no such split)."""
    if split not in splits:
        return []
    return split_records(parquet.read_split(store, parquet.split_key(prefix, "processed", split)))
