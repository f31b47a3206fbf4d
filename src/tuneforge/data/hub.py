"""Loading Hugging Face datasets (by Hub id, or a dataset directory on the server).

Runs in a job worker: `datasets` downloads, caches and converts the data. A Hub id is resolved
from an empty working directory, so an id can never name a folder of the server's own, and its
download is bounded (`hub_bounds.py`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from tuneforge.data.config import DatasetImport
from tuneforge.data.hub_bounds import DownloadCap, hub_size, too_large
from tuneforge.data.limits import DEFAULT_LIMITS, DataFileError


@contextlib.contextmanager
def _nowhere() -> Iterator[None]:
    """Work from an empty directory for the duration (this process only runs this job)."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory() as empty:
        os.chdir(empty)
        try:
            yield
        finally:
            os.chdir(previous)


def load_tables(
    request: DatasetImport,
    cache_dir: Path,
    max_bytes: int | None = None,
    bounded: Callable[[int], None] | None = None,
) -> dict[str, pa.Table]:
    """The dataset's splits as Arrow tables, checked against the upload limits. With
    `max_bytes`, a Hub dataset whose files the Hub says are larger is refused before anything is
    downloaded, and the download stops once it passes `max_bytes`, or a little past the size the
    Hub gives when that is less (then `bounded` hears the lower bound before the download)."""
    is_dir = request.source == "server_path" or Path(request.path).is_absolute()
    if max_bytes is None or is_dir:
        return _load(request, cache_dir, is_dir)
    size = hub_size(request)
    if size is not None and size > max_bytes:
        raise DataFileError(too_large(f"{request.path!r} on the Hub", size, max_bytes))
    if size is not None and size + download_slack(size) < max_bytes:
        max_bytes = size + download_slack(size)
        if bounded is not None:
            bounded(max_bytes)
    cap = DownloadCap(max_bytes)
    try:
        with cap.active():
            return _load(request, cache_dir, is_dir)
    except DataFileError as exc:
        if cap.exceeded:  # the datasets library may wrap the cap's error in its own
            raise DataFileError(cap.exceeded) from exc
        raise


def download_slack(size: int) -> int:
    """What a download may take beyond its data files' size: the dataset card, the Hub's
    answers about the repository, a file changed since the metadata was read."""
    return 8 * 2**20 + size // 20


def _load(request: DatasetImport, cache_dir: Path, is_dir: bool) -> dict[str, pa.Table]:
    from datasets import DatasetDict, load_dataset

    context = contextlib.nullcontext() if is_dir else _nowhere()
    try:
        with context:
            loaded: Any = load_dataset(
                request.path,
                name=request.subset,
                split=request.split,
                revision=request.revision,
                cache_dir=str(cache_dir),
            )
    except FileNotFoundError as exc:
        raise DataFileError(f"No dataset {request.path!r}: {exc}") from exc
    except Exception as exc:  # network, authentication, unknown subset or split, bad files
        raise DataFileError(
            f"Could not load {request.path!r} with the datasets library: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    splits = dict(loaded) if isinstance(loaded, DatasetDict) else {request.split or "train": loaded}
    tables = {name: split.data.table for name, split in splits.items()}
    for name, table in tables.items():
        if (
            table.num_rows > DEFAULT_LIMITS.max_rows
            or table.num_columns > DEFAULT_LIMITS.max_columns
        ):
            raise DataFileError(
                f"The {name} split has {table.num_rows:,} rows and {table.num_columns:,} columns; "
                f"the limits are {DEFAULT_LIMITS.max_rows:,} rows and "
                f"{DEFAULT_LIMITS.max_columns:,} columns. Choose a split or a subset."
            )
    return tables
