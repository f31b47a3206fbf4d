"""Fine-tuned models: list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from tuneforge.api.deps import MAX_OFFSET, CurrentUser, SessionDep, SettingsDep, StoreDep
from tuneforge.schemas.models import ModelList, ModelPublic
from tuneforge.services import models as service

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelList)
def list_models(
    session: SessionDep,
    user: CurrentUser,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many models.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Return at most this many.")] = 50,
) -> ModelList:
    rows, total = service.list_models(session, user, offset=offset, limit=limit)
    return ModelList(items=[ModelPublic.model_validate(r) for r in rows], total=total)


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(model_id: str, session: SessionDep, user: CurrentUser) -> ModelPublic:
    return ModelPublic.model_validate(service.get_model(session, user, model_id))


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(
    model_id: str, session: SessionDep, store: StoreDep, user: CurrentUser, settings: SettingsDep
) -> None:
    service.delete_model(session, store, user, model_id, settings.data_dir)
