"""Datasets: upload, list, read rows, preview a mapping, process, report and statistics."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status

from tuneforge.api.deps import MAX_OFFSET, CurrentUser, SessionDep, SettingsDep, StoreDep
from tuneforge.api.openapi import errors
from tuneforge.data.augment.spec import AugmentSpec
from tuneforge.data.config import DatasetImport, ProcessingConfig
from tuneforge.data.mapping import MappingSpec
from tuneforge.data.validation import ValidationReport
from tuneforge.errors import NotFound
from tuneforge.schemas.augmentation import AugmentPreview
from tuneforge.schemas.datasets import DatasetList, DatasetPublic, RowsPage
from tuneforge.services import augmentation
from tuneforge.services import datasets as service

router = APIRouter(prefix="/datasets", tags=["datasets"])
UPLOAD_PATH = "/datasets"


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic, responses=errors(409)
)
def upload_dataset(
    file: Annotated[
        UploadFile,
        File(
            description="CSV, TSV, JSON, JSONL, Parquet, XLSX, TXT or "
            "a ZIP of images with a metadata file."
        ),
    ],
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
    name: Annotated[str | None, Form(max_length=200, description="A name for it.")] = None,
) -> DatasetPublic:
    dataset = service.upload(
        session,
        store,
        settings,
        user,
        filename=file.filename or "upload",
        stream=file.file,
        name=name,
    )
    return DatasetPublic.model_validate(dataset)


@router.post(
    "/import",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DatasetPublic,
    responses=errors(403, 409, 429),
)
def import_dataset(
    body: DatasetImport, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> DatasetPublic:
    """Bring in a Hugging Face dataset or (administrators) a file on the server, in a job."""
    return DatasetPublic.model_validate(service.import_dataset(session, user, settings, body))


@router.get("", response_model=DatasetList)
def list_datasets(
    session: SessionDep,
    user: CurrentUser,
    kind: Annotated[
        Literal["raw", "processed"] | None, Query(description="Only this kind.")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Return at most this many.")] = 50,
) -> DatasetList:
    rows, total = service.list_datasets(session, user, kind=kind, offset=offset, limit=limit)
    return DatasetList(items=[DatasetPublic.model_validate(r) for r in rows], total=total)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: SessionDep, user: CurrentUser) -> DatasetPublic:
    return DatasetPublic.model_validate(service.get_dataset(session, user, dataset_id))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(409))
def delete_dataset(
    dataset_id: str, session: SessionDep, store: StoreDep, user: CurrentUser
) -> None:
    service.delete_dataset(session, store, user, dataset_id)


@router.get("/{dataset_id}/rows", response_model=RowsPage, responses=errors(409))
def dataset_rows(
    dataset_id: str,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
    split: Annotated[str | None, Query(description="The split (default: the first).")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="The first row to return.")] = 0,
    limit: Annotated[int, Query(ge=1, le=200, description="How many rows.")] = 20,
    thumbnails: Annotated[
        bool,
        Query(
            description="Show images as small JPEG data: URLs (96 px) instead of "
            "`<N bytes>`: image bytes, Parquet image structs' bytes and long data: URLs; a raw "
            "ZIP dataset's rows also gain `_images`: {column: [thumbnails]} of the images "
            "their values name."
        ),
    ] = False,
) -> RowsPage:
    name, rows, total = service.dataset_rows(
        session,
        store,
        user,
        dataset_id,
        split=split,
        offset=offset,
        limit=limit,
        thumbnails=thumbnails,
        settings=settings,
    )
    return RowsPage(split=name, offset=offset, total=total, rows=rows)


@router.post("/{dataset_id}/preview", responses=errors(409))
def preview_mapping(
    dataset_id: str,
    mapping: MappingSpec,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> list[dict[str, Any]]:
    """The first rows rendered in Gemma's chat format with this mapping, or their problems.
    Each example: `row`, `rendered` (None when the row cannot be used), `problems`, `images`
    (a thumbnail data: URL for each `<start_of_image>` in `rendered`, in order), and `pair`
    (preference) or `label` (feedback)."""
    return service.preview(session, store, settings, user, dataset_id, mapping)


@router.post(
    "/{dataset_id}/process",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={
        202: {"model": DatasetPublic, "description": "Processing in a job."},
        **errors(409, 429),
    },
)
def process_dataset(
    dataset_id: str,
    config: ProcessingConfig,
    response: Response,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DatasetPublic:
    """Process into conversations: at once for small data (201), in a job for large (202)."""
    dataset = service.process_dataset(session, store, settings, user, dataset_id, config)
    if dataset.job_id:
        response.status_code = status.HTTP_202_ACCEPTED
    return DatasetPublic.model_validate(dataset)


@router.get("/{dataset_id}/report", response_model=ValidationReport)
def dataset_report(dataset_id: str, session: SessionDep, user: CurrentUser) -> ValidationReport:
    dataset = service.get_dataset(session, user, dataset_id)
    if dataset.report is None:
        raise NotFound("This dataset has no validation report (raw data, or not processed yet).")
    return ValidationReport.model_validate(dataset.report)


@router.get("/{dataset_id}/stats")
def dataset_stats(dataset_id: str, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    dataset = service.get_dataset(session, user, dataset_id)
    if dataset.stats is None:
        raise NotFound("This dataset has no statistics yet (they come with processing).")
    return dataset.stats


@router.post("/{dataset_id}/augment/preview", response_model=AugmentPreview, responses=errors(409))
def preview_augmentation(
    dataset_id: str,
    spec: AugmentSpec,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
    count: Annotated[
        int, Query(ge=1, le=augmentation.MAX_PREVIEW_ROWS, description="Rows to show.")
    ] = augmentation.PREVIEW_ROWS,
    price_per_1k_tokens: Annotated[
        float,
        Query(ge=0, le=1000, description="An endpoint's price per 1,000 tokens, for the cost."),
    ] = 0.0,
) -> AugmentPreview:
    """The first train rows of a processed dataset beside the variants this augmentation
    makes of them (exactly as the job will; an LLM method's endpoint is asked for them), with
    the rows, tokens, time and cost of the job."""
    return augmentation.preview_augmentation(
        session, store, settings, user, dataset_id, spec, count, price_per_1k_tokens
    )


@router.post(
    "/{dataset_id}/augment",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DatasetPublic,
    responses=errors(409, 429),
)
def augment_dataset(
    dataset_id: str,
    spec: AugmentSpec,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> DatasetPublic:
    """Make a new processed dataset: this one's train rows and their variants (each naming its
    source row in `augmented_from` and its methods in `augmentation`), its test split copied
    unchanged. In a `dataset_augment` job; the dataset is `processing` until it ends."""
    return DatasetPublic.model_validate(
        augmentation.augment_dataset(session, settings, user, dataset_id, spec)
    )
