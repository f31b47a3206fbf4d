"""Datasets: bring them in, look at them, process them into conversations. Always as the owner."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from tuneforge.data import hub, parquet
from tuneforge.data.config import DatasetImport, ProcessingConfig
from tuneforge.data.formats import guess_mapping
from tuneforge.data.limits import ParseLimits
from tuneforge.data.mapping import ImageResolver, MappingSpec, RowMapper
from tuneforge.data.process import process, records
from tuneforge.data.readers import read_table
from tuneforge.db.repositories.datasets import DatasetRepository
from tuneforge.db.tables import Dataset, Job, User
from tuneforge.jobs.status import JobStatus
from tuneforge.models.chat_template import render
from tuneforge.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore, artifact_prefix

SYNC_ROWS = 20_000  # larger datasets are processed in a job
SAMPLE_ROWS = 50  # rows looked at to recognise the format
PREVIEW_ROWS = 3
SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def _prefix(dataset: Dataset) -> str:
    return artifact_prefix(dataset.owner_id, "datasets", dataset.id)


def _columns(table: Any) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in table.schema]


def _suffix(filename: str) -> str:
    match = SUFFIX.search(filename)
    return match.group(0).lower() if match else ""


def upload(
    session: Session,
    store: ArtifactStore,
    settings: Settings,
    user: User,
    *,
    filename: str,
    stream: BinaryIO,
    name: str | None = None,
) -> Dataset:
    """Read an uploaded file (bounded), store it with its rows as Parquet, guess its mapping."""
    scratch = settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        path = Path(tmp) / f"upload{_suffix(filename)}"  # never the client's path
        with path.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        result = read_table(path, filename, ParseLimits())
        table = result.table
        if result.images is not None:
            result.images.close()  # read again from the stored archive when processing
        dataset = Dataset(
            owner_id=user.id,
            name=(name or filename)[:200],
            kind="raw",
            origin="upload",
            origin_ref=filename[:1000],
            status="ready",
        )
        session.add(dataset)
        session.flush()
        prefix = _prefix(dataset)
        store.put_file(f"{prefix}/source/original{_suffix(filename)}", path)
        _record_raw(store, dataset, {"train": table}, result.warnings)
        dataset.size_bytes += path.stat().st_size
    return dataset


def _record_raw(
    store: ArtifactStore, dataset: Dataset, tables: dict[str, Any], warnings: list[str]
) -> None:
    """Store a raw dataset's splits as Parquet and describe them (format guess, columns, ...)."""
    first = next(iter(tables.values()))
    guess = guess_mapping(first.column_names, records(first.slice(0, SAMPLE_ROWS)))
    dataset.format = guess.format if guess.sure else None
    dataset.mapping = (
        guess.mapping.model_dump(mode="json", exclude_none=True) if guess.mapping else None
    )
    dataset.warnings = [*warnings, *([] if guess.sure else [guess.reason])]
    dataset.columns = _columns(first)
    dataset.splits = {name: table.num_rows for name, table in tables.items()}
    dataset.rows = sum(dataset.splits.values())
    dataset.size_bytes = sum(
        parquet.write_split(store, parquet.split_key(_prefix(dataset), "raw", name), table)
        for name, table in tables.items()
    )
    dataset.status = "ready"


def import_dataset(session: Session, user: User, request: DatasetImport) -> Dataset:
    """Start bringing in a Hugging Face dataset or a file on the server (in a job)."""
    is_path = request.source == "server_path" or request.path.startswith(("/", "."))
    if is_path and not user.is_admin:
        raise PermissionDenied("Only administrators can import from a path on the server.")
    if request.source == "server_path" and not Path(request.path).exists():
        raise InvalidInput(f"There is no file or directory {request.path!r} on the server.")
    if not is_path and not HUB_ID.match(request.path):
        raise InvalidInput(
            f"{request.path!r} is not a Hugging Face dataset id (like `tatsu-lab/alpaca`)."
        )
    dataset = Dataset(
        owner_id=user.id,
        name=(request.name or request.path)[:200],
        kind="raw",
        origin="huggingface" if request.source == "huggingface" else "server_path",
        origin_ref=request.path,
        status="processing",
        config=request.model_dump(mode="json"),
    )
    session.add(dataset)
    session.flush()
    job = Job(
        owner_id=user.id, kind="dataset_import", spec={"dataset_id": dataset.id}, status="queued"
    )
    session.add(job)
    session.flush()
    dataset.job_id = job.id
    return dataset


def run_import(store: ArtifactStore, settings: Settings, dataset: Dataset) -> None:
    """Load what `import_dataset` asked for and record it on `dataset` (the caller commits)."""
    request = DatasetImport.model_validate(dataset.config)
    path = Path(request.path)
    if request.source == "server_path" and path.is_file():
        result = read_table(path, path.name)
        if result.images is not None:
            result.images.close()
            store.put_file(f"{_prefix(dataset)}/source/original.zip", path)
        _record_raw(store, dataset, {"train": result.table}, result.warnings)
        return
    tables = hub.load_tables(request, settings.data_dir / "cache" / "huggingface")
    _record_raw(store, dataset, tables, [])


def _settle(session: Session, dataset: Dataset) -> Dataset:
    """A dataset whose job ended without finishing it (a lost worker) is failed, with why."""
    if dataset.status == "processing" and dataset.job_id:
        job = session.get(Job, dataset.job_id)
        if job is None or job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            dataset.status = "failed"
            dataset.error = job.error if job and job.error else "its job ended unfinished"
    return dataset


def get_dataset(session: Session, user: User, dataset_id: str) -> Dataset:
    dataset = DatasetRepository(session, user).get(dataset_id)
    if dataset is None:
        raise NotFound(f"No dataset {dataset_id}.")
    return _settle(session, dataset)


def list_datasets(
    session: Session, user: User, *, kind: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Dataset], int]:
    rows, total = DatasetRepository(session, user).search(kind=kind, offset=offset, limit=limit)
    return [_settle(session, row) for row in rows], total


def delete_dataset(session: Session, store: ArtifactStore, user: User, dataset_id: str) -> None:
    dataset = get_dataset(session, user, dataset_id)
    if dataset.status == "processing":
        raise Conflict("This dataset is still being processed; cancel its job first.")
    store.delete(_prefix(dataset))
    session.delete(dataset)


def _stage(dataset: Dataset) -> str:
    return "raw" if dataset.kind == "raw" else "processed"


def dataset_rows(
    session: Session,
    store: ArtifactStore,
    user: User,
    dataset_id: str,
    *,
    split: str | None,
    offset: int,
    limit: int,
) -> tuple[str, list[dict[str, Any]], int]:
    dataset = get_dataset(session, user, dataset_id)
    if dataset.status != "ready":
        raise Conflict(f"This dataset is {dataset.status}; its rows are not readable yet.")
    split = split or next(iter(dataset.splits), "train")
    if split not in dataset.splits:
        raise NotFound(f"This dataset has no split {split!r}; it has {', '.join(dataset.splits)}.")
    key = parquet.split_key(_prefix(dataset), _stage(dataset), split)
    rows, total = parquet.read_page(store, key, offset, limit)
    return split, rows, total


def _source_tables(store: ArtifactStore, dataset: Dataset) -> dict[str, Any]:
    prefix = _prefix(dataset)
    return {
        s: parquet.read_split(store, parquet.split_key(prefix, "raw", s)) for s in dataset.splits
    }


def preview(
    session: Session,
    store: ArtifactStore,
    settings: Settings,
    user: User,
    dataset_id: str,
    mapping: MappingSpec,
    count: int = PREVIEW_ROWS,
) -> list[dict[str, Any]]:
    """The first rows rendered exactly as training will see them, or what is wrong with them."""
    dataset = _raw(session, user, dataset_id)
    split = next(iter(dataset.splits))
    key = parquet.split_key(_prefix(dataset), "raw", split)
    table = parquet.head(store, key, count)
    with source_images(store, settings, dataset) as images:
        mapper = RowMapper(mapping, table.column_names, images)
        mapped = [mapper.map(row) for row in records(table)]
    examples = []
    for number, result in enumerate(mapped):
        rendered = None
        if result.record is not None:
            rendered = rendered_example(result.record)
        examples.append(
            {
                "row": number,
                "rendered": rendered,
                "problems": [detail for _, detail in result.problems],
            }
        )
    return examples


@contextmanager
def source_images(
    store: ArtifactStore, settings: Settings, dataset: Dataset
) -> Iterator[ImageResolver | None]:
    """For a ZIP dataset, its images (from a local copy of the stored archive); else None."""
    archives = [k for k in store.list(f"{_prefix(dataset)}/source") if k.endswith(".zip")]
    if not archives:
        yield None
        return
    local = settings.data_dir / "cache" / "datasets" / dataset.id / "original.zip"
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


def rendered_example(record: dict[str, Any]) -> str:
    """A processed record as training sees it (a preference pair: the prompt with each answer)."""
    if "messages" in record:
        return render(record["messages"])
    if "chosen" in record:
        return "".join(render(record["prompt"] + record[k]) for k in ("chosen", "rejected"))
    if "prompt" in record:
        return render(record["prompt"], add_generation_prompt=True)
    return str(record["text"])


def processed_records(store: ArtifactStore, dataset: Dataset, split: str) -> list[dict[str, Any]]:
    """Every row of a processed dataset's split, as records (empty if it has no such split)."""
    if split not in dataset.splits:
        return []
    table = parquet.read_split(store, parquet.split_key(_prefix(dataset), "processed", split))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _raw(session: Session, user: User, dataset_id: str) -> Dataset:
    dataset = get_dataset(session, user, dataset_id)
    if dataset.kind != "raw":
        raise Conflict("This dataset is already processed; process its raw source instead.")
    if dataset.status != "ready":
        raise Conflict(f"This dataset is {dataset.status}.")
    return dataset


def process_dataset(
    session: Session,
    store: ArtifactStore,
    settings: Settings,
    user: User,
    dataset_id: str,
    config: ProcessingConfig,
) -> Dataset:
    """Create the processed dataset: at once when small, through a `dataset_process` job else."""
    source = _raw(session, user, dataset_id)
    RowMapper(config.mapping, [c["name"] for c in source.columns])  # refuse a bad mapping now
    if config.split.mode == "source" and len(source.splits) < 2:
        raise InvalidInput("The source has only one split; choose a manual split or none.")
    target = Dataset(
        owner_id=source.owner_id,
        name=(config.name or f"{source.name} (processed)")[:200],
        kind="processed",
        source_id=source.id,
        origin="processing",
        origin_ref=source.name,
        format="conversation" if config.mapping.mode != "language_modeling" else "text",
        status="processing",
        config=config.model_dump(mode="json"),
        mapping=config.mapping.model_dump(mode="json", exclude_none=True),
    )
    session.add(target)
    session.flush()
    if source.rows <= SYNC_ROWS:
        run_processing(store, settings, source, target)
        return target
    job = Job(
        owner_id=user.id, kind="dataset_process", spec={"dataset_id": target.id}, status="queued"
    )
    session.add(job)
    session.flush()
    target.job_id = job.id
    return target


def run_processing(
    store: ArtifactStore,
    settings: Settings,
    source: Dataset,
    target: Dataset,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Process `source` into `target` and record the outcome on `target` (the caller commits)."""
    from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer

    config = ProcessingConfig.model_validate(target.config)
    tokenizer = gemma_tokenizer(settings.models_dir)
    with source_images(store, settings, source) as images:
        result = process(
            _source_tables(store, source),
            config,
            lambda texts: count_tokens(texts, tokenizer),
            images,
            progress,
        )
    target.report = result.report.model_dump(mode="json")
    if config.on_problem == "fail" and result.report.problems:
        target.status = "failed"
        target.error = (
            f"{result.report.dropped} of {result.report.rows_in} rows have problems; "
            "see the report, fix the data or the mapping, or choose to drop them."
        )
        return
    if not result.splits:
        target.status = "failed"
        target.error = "No row survived validation; see the report."
        return
    prefix = _prefix(target)
    size = 0
    for split, table in result.splits.items():
        size += parquet.write_split(store, parquet.split_key(prefix, "processed", split), table)
    target.stats = result.stats.model_dump(mode="json")
    target.splits = {name: table.num_rows for name, table in result.splits.items()}
    target.rows = sum(target.splits.values())
    target.columns = _columns(next(iter(result.splits.values())))
    target.size_bytes = size
    target.status = "ready"
