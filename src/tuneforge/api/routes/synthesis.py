"""Synthesis: make a raw dataset from uploaded documents (a `dataset_synthesis` job), follow
it, resume it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status
from pydantic import ValidationError

from tuneforge.api.deps import CurrentUser, SessionDep, SettingsDep, StoreDep
from tuneforge.api.openapi import errors
from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.errors import InvalidInput
from tuneforge.schemas.datasets import DatasetPublic
from tuneforge.schemas.synthesis import SynthesisProgress
from tuneforge.services import synthesis as service

router = APIRouter(prefix="/datasets", tags=["datasets"])
#: The upload route, which takes `max_upload_bytes` (see `api/app.py`).
UPLOAD_PATH = "/datasets/synthesize"


def _spec(text: str) -> SynthesisSpec:
    try:
        return SynthesisSpec.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'spec'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise InvalidInput(f"The synthesis spec is not valid: {problems}") from None


@router.post(
    "/synthesize",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DatasetPublic,
    responses=errors(409, 429),
)
def synthesize(
    files: Annotated[
        list[UploadFile],
        File(
            description="The documents: PDF, DOCX, PPTX, HTML, Markdown or TXT, one or more, "
            "or a ZIP of many."
        ),
    ],
    spec: Annotated[
        str,
        Form(
            max_length=200_000,
            description="The synthesis spec as JSON (`SynthesisSpec`: the generator, task, "
            "template, pairs per chunk, chunking and curation).",
        ),
    ],
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    user: CurrentUser,
    name: Annotated[str | None, Form(max_length=200, description="The new dataset's name.")] = None,
) -> DatasetPublic:
    """Make a raw dataset from documents: a model writes examples for each chunk, curation
    keeps the grounded, distinct ones, and each row names its document, pages, section and
    chunk. In a `dataset_synthesis` job (`job_id`): the dataset is `processing` until it ends."""
    uploads = [
        service.Upload(f.filename or f"document-{i + 1}", f.file) for i, f in enumerate(files)
    ]
    return DatasetPublic.model_validate(
        service.synthesize(session, store, settings, user, uploads, name, _spec(spec))
    )


@router.get("/{dataset_id}/synthesis", response_model=SynthesisProgress)
def synthesis_progress(
    dataset_id: str, session: SessionDep, user: CurrentUser
) -> SynthesisProgress:
    """How far the synthesis that makes this dataset is: chunks done, pairs kept, dropped by
    reason, tokens, and the last pairs kept with their sources (poll it while it runs)."""
    return service.progress(session, user, dataset_id)


@router.post(
    "/{dataset_id}/synthesis/resume", response_model=DatasetPublic, responses=errors(409, 429)
)
def resume_synthesis(
    dataset_id: str, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> DatasetPublic:
    """Queue a failed or cancelled synthesis again; the chunks it finished are not generated
    again."""
    return DatasetPublic.model_validate(service.resume(session, settings, user, dataset_id))
