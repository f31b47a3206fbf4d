"""Exports of fine-tuned models: the choices with their sizes, export records, downloads (one
file, or a ZIP of all, both resumable with HTTP Range)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from tuneforge.api.deps import CurrentUser, SessionDep, SettingsDep, StoreDep
from tuneforge.api.errors import error_response
from tuneforge.api.openapi import errors
from tuneforge.db.tables import Export
from tuneforge.export.spec import ExportRequest
from tuneforge.export.zipstream import RangeNotSatisfiable, parse_range
from tuneforge.schemas.exports import ExportChoices, ExportCreated, ExportList, ExportPublic
from tuneforge.services import exports as service

router = APIRouter(tags=["exports"])
API = "/api/v1"


def public(export: Export) -> ExportPublic:
    download = f"{API}/exports/{export.id}/download" if export.status == "succeeded" else None
    return ExportPublic.model_validate(export).model_copy(update={"download_url": download})


@router.get("/models/{model_id}/export-choices", response_model=ExportChoices)
def export_choices(
    model_id: str, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> ExportChoices:
    """Every format and quantisation the model can be exported as, with estimated sizes."""
    return ExportChoices.model_validate(service.estimates(session, user, settings, model_id))


@router.post(
    "/models/{model_id}/exports",
    response_model=ExportCreated,
    status_code=201,
    responses={
        200: {"model": ExportCreated, "description": "An identical export, reused."},
        **errors(409, 429),
    },
)
def create_export(
    model_id: str,
    body: ExportRequest,
    response: Response,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> ExportCreated:
    """Export the model (an `export` job); an identical download export that exists or is
    under way is returned instead (200, `reused`)."""
    export, reused = service.create_export(session, store, user, settings, model_id, body)
    if reused:
        response.status_code = status.HTTP_200_OK
    return ExportCreated(**public(export).model_dump(), reused=reused)


@router.get("/models/{model_id}/exports", response_model=ExportList)
def list_exports(model_id: str, session: SessionDep, user: CurrentUser) -> ExportList:
    """The model's exports, newest first."""
    return ExportList(
        items=[
            ExportPublic.model_validate(public(e))
            for e in service.list_exports(session, user, model_id)
        ]
    )


@router.get("/exports/{export_id}", response_model=ExportPublic)
def get_export(export_id: str, session: SessionDep, user: CurrentUser) -> ExportPublic:
    return public(service.get_export(session, user, export_id))


@router.delete("/exports/{export_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_export(export_id: str, session: SessionDep, store: StoreDep, user: CurrentUser) -> None:
    service.delete_export(session, store, user, export_id)


@router.get(
    "/exports/{export_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file or ZIP."},
        206: {"description": "The requested byte range."},
        416: {"description": "The range is outside the file (`Content-Range` gives its size)."},
    },
)
def download(
    export_id: str,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    file: Annotated[
        str | None,
        Query(max_length=300, description="One file of the export; default: a ZIP of all."),
    ] = None,
    range_header: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
) -> Response:
    """One file of a succeeded export, or all of them as a ZIP made on the fly; both have a
    Content-Length and honour a `Range: bytes=a-b` header, so an interrupted download resumes."""
    plan = service.download(session, store, user, export_id, file)
    headers = {
        "Content-Disposition": f'attachment; filename="{plan.filename}"',
        "Accept-Ranges": "bytes",
    }
    try:
        wanted = parse_range(range_header, plan.size)
    except RangeNotSatisfiable:
        outside = error_response(
            416,
            "range_not_satisfiable",
            f"The requested range is outside the file, which has {plan.size:,} bytes.",
            {"size": plan.size},
        )
        outside.headers["Content-Range"] = f"bytes */{plan.size}"
        return outside
    start, end = wanted if wanted is not None else (0, plan.size)
    headers["Content-Length"] = str(end - start)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{plan.size}"
    return StreamingResponse(
        plan.chunks(store, start, end),
        status_code=206 if wanted is not None else 200,
        media_type="application/zip" if plan.layout is not None else "application/octet-stream",
        headers=headers,
    )
