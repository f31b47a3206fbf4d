"""Evaluations: the results of a finished `evaluate` job, its samples and their files. An
evaluation is launched as a job (`POST /jobs` with kind `evaluate`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from tuneforge.api.deps import MAX_OFFSET, CurrentUser, SessionDep, StoreDep
from tuneforge.evaluation.report import SampleFilter
from tuneforge.schemas.evaluations import EvaluationPublic, SamplesPage
from tuneforge.services import evaluations as service
from tuneforge.services.evaluations import Format

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


@router.get("/{job_id}", response_model=EvaluationPublic)
def get_evaluation(job_id: str, session: SessionDep, user: CurrentUser) -> EvaluationPublic:
    """The metrics table of a finished evaluation (409 while it runs)."""
    return EvaluationPublic.model_validate(service.evaluation(session, user, job_id))


@router.get("/{job_id}/samples", response_model=SamplesPage)
def get_samples(
    job_id: str,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many samples.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Return at most this many.")] = 50,
    which: Annotated[
        SampleFilter | None,
        Query(
            alias="filter",
            description="Only the samples where model A (and B) answered right or wrong: right "
            "is `correct` where the suite has it (classification, extraction, json), else a "
            "`score` of at least 0.5.",
        ),
    ] = None,
) -> SamplesPage:
    items, total = service.samples(
        session, store, user, job_id, offset=offset, limit=limit, which=which
    )
    return SamplesPage.model_validate({"items": items, "total": total})


def _download(
    job_id: str, session: SessionDep, store: StoreDep, user: CurrentUser, fmt: Format
) -> StreamingResponse:
    key, filename, media_type = service.samples_file(session, store, user, job_id, fmt)
    return StreamingResponse(
        store.iter_chunks(key),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/{job_id}/samples.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "Every sample, as CSV."}},
)
def download_csv(
    job_id: str, session: SessionDep, store: StoreDep, user: CurrentUser
) -> StreamingResponse:
    """Every sample with its prompt, reference, answers and scores, one line each."""
    return _download(job_id, session, store, user, "csv")


@router.get(
    "/{job_id}/samples.jsonl",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "Every sample, as JSONL."}
    },
)
def download_jsonl(
    job_id: str, session: SessionDep, store: StoreDep, user: CurrentUser
) -> StreamingResponse:
    """Every sample as one JSON object per line (the shape of the samples endpoint's items)."""
    return _download(job_id, session, store, user, "jsonl")
