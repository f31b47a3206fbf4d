"""Datasets: bring them in, look at them, process them into conversations. Always as the owner."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from tuneforge.data import parquet
from tuneforge.data.config import DatasetImport, ProcessingConfig
from tuneforge.data.image_refs import ImageResolver
from tuneforge.data.images import ImageRejected, thumbnail
from tuneforge.data.limits import ParseLimits
from tuneforge.data.mapping import MappingSpec, RowMapper
from tuneforge.data.process import records, rendered_texts
from tuneforge.data.readers import read_table
from tuneforge.data.readers.zip_dataset import nested_references
from tuneforge.data.stored import dataset_prefix, process_raw, source_images, store_raw
from tuneforge.db.repositories.datasets import DatasetRepository
from tuneforge.db.tables import Dataset, User
from tuneforge.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from tuneforge.jobs.kinds.dataset import DatasetJobSpec
from tuneforge.jobs.lifecycle import create_job
from tuneforge.jobs.quotas import check_storage, import_budget
from tuneforge.models.chat_template import render
from tuneforge.models.tool_format import tools_of
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore
from tuneforge.storage.disk_full import reporting_disk_full

SYNC_ROWS = 20_000  # larger datasets are processed in a job
NAMED_IMAGES = "_images"  # in a raw ZIP dataset's rows: {column: thumbnails of what it names}
PREVIEW_ROWS = 3
SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def _prefix(dataset: Dataset) -> str:
    return dataset_prefix(dataset.owner_id, dataset.id)


def file_suffix(filename: str) -> str:
    """`filename`'s extension (`.csv`: up to 8 letters or digits), lower-cased, or "": what a
    stored copy keeps of the client's name."""
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
    """Read an uploaded file (bounded), store it with its rows as Parquet, guess its mapping.
    A disk that fills up on the way raises DiskFull and leaves no file of the upload behind
    (the dataset's row is rolled back with the request)."""
    scratch = settings.data_dir / "tmp"
    with reporting_disk_full(settings.data_dir):
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            path = Path(tmp) / f"upload{file_suffix(filename)}"  # never the client's path
            with path.open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            check_storage(session, user, settings, path.stat().st_size)
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
            try:
                store.put_file(f"{prefix}/source/original{file_suffix(filename)}", path)
                dataset.fill(store_raw(store, prefix, {"train": table}, result.warnings))
            except BaseException:
                store.delete(prefix)
                raise
            dataset.size_bytes += path.stat().st_size
    return dataset


def import_dataset(
    session: Session, user: User, settings: Settings, request: DatasetImport
) -> Dataset:
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
    budget = None if is_path else import_budget(session, user, settings)
    spec = DatasetJobSpec(dataset_id=dataset.id, budget_bytes=budget)
    create_job(session, user, settings, "dataset_import", spec)
    return dataset


def get_dataset(session: Session, user: User, dataset_id: str) -> Dataset:
    return DatasetRepository(session, user).require(dataset_id)


def list_datasets(
    session: Session, user: User, *, kind: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Dataset], int]:
    return DatasetRepository(session, user).search(kind=kind, offset=offset, limit=limit)


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
    thumbnails: bool = False,
    settings: Settings | None = None,
) -> tuple[str, list[dict[str, Any]], int]:
    """A page of rows; with `thumbnails`, images as small JPEG data: URLs, and (given
    `settings`) a raw ZIP dataset's rows gain `_images`: {column: [thumbnails]} of the images
    their values name."""
    dataset = get_dataset(session, user, dataset_id)
    if dataset.status != "ready":
        raise Conflict(f"This dataset is {dataset.status}; its rows are not readable yet.")
    split = split or next(iter(dataset.splits), "train")
    if split not in dataset.splits:
        raise NotFound(f"This dataset has no split {split!r}; it has {', '.join(dataset.splits)}.")
    key = parquet.split_key(_prefix(dataset), _stage(dataset), split)
    rows, total = parquet.read_page(store, key, offset, limit, thumbnails=thumbnails)
    if thumbnails and settings is not None and dataset.kind == "raw":
        with source_images(store, settings, _prefix(dataset)) as images:
            if images is not None:
                for row in rows:
                    named = _named_images(row, images)
                    if named:
                        row[NAMED_IMAGES] = named
    return split, rows, total


def _named_images(row: dict[str, Any], images: ImageResolver) -> dict[str, list[str]]:
    """Thumbnails of the archive's images that each of the row's values names (at any depth)."""
    named: dict[str, list[str]] = {}
    for column, value in row.items():
        found = []
        for name in nested_references(value):
            data = images(name)
            if data is not None:
                try:
                    found.append(thumbnail(data, parquet.THUMBNAIL_SIZE))
                except ImageRejected:
                    continue
        if found:
            named[column] = found
    return named


def preview(
    session: Session,
    store: ArtifactStore,
    settings: Settings,
    user: User,
    dataset_id: str,
    mapping: MappingSpec,
    count: int = PREVIEW_ROWS,
) -> list[dict[str, Any]]:
    """The first rows rendered exactly as training will see them, or what is wrong with them;
    `images` holds a thumbnail (a JPEG data: URL) for each `<start_of_image>`, in order."""
    dataset = _raw(session, user, dataset_id)
    split = next(iter(dataset.splits))
    key = parquet.split_key(_prefix(dataset), "raw", split)
    table = parquet.head(store, key, count)
    with source_images(store, settings, _prefix(dataset)) as images:
        mapper = RowMapper(mapping, table.column_names, images)
        mapped = [mapper.map(row) for row in records(table)]
    examples = []
    for number, result in enumerate(mapped):
        example: dict[str, Any] = {
            "row": number,
            "rendered": None,
            "problems": [detail for _, detail in result.problems],
        }
        record = result.record
        if record is not None:
            example["rendered"] = rendered_example(record)
            example["images"] = [thumbnail(image) for image in record.get("images") or ()]
        if record is not None and "chosen" in record:
            prompt, chosen, rejected = rendered_texts(record)
            example["pair"] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if record is not None and "label" in record and "completion" in record:
            example["label"] = record["label"]
        examples.append(example)
    return examples


def rendered_example(record: dict[str, Any]) -> str:
    """A processed record as training sees it, its tools declared (a preference pair: the
    prompt with each answer; feedback: the prompt with its completion)."""
    tools = tools_of(record.get("tools"))
    if "messages" in record:
        return render(record["messages"], tools=tools)
    if "chosen" in record:
        return "".join(render(record["prompt"] + record[k]) for k in ("chosen", "rejected"))
    if "completion" in record:
        return render(record["prompt"] + record["completion"])
    if "prompt" in record:
        return render(record["prompt"], tools=tools, add_generation_prompt=True)
    return str(record["text"])


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
        with reporting_disk_full(settings.data_dir):
            target.fill(
                process_raw(
                    store,
                    settings,
                    (_prefix(source), source.splits),
                    _prefix(target),
                    config,
                )
            )
        return target
    create_job(session, user, settings, "dataset_process", DatasetJobSpec(dataset_id=target.id))
    return target
