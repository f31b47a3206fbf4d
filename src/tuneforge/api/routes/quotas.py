"""Quotas: your limits beside your usage; an administrator reads and sets anyone's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tuneforge.api.deps import CurrentUser, SessionDep, SettingsDep
from tuneforge.api.openapi import errors
from tuneforge.schemas.quotas import QuotaPublic, QuotaSet
from tuneforge.services import quotas as service

router = APIRouter(tags=["quotas"])

Username = Annotated[str, Path(max_length=64, description="The user's name.")]


@router.get("/quota", response_model=QuotaPublic)
def my_quota(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> QuotaPublic:
    """Your storage, concurrent-jobs and daily-jobs limits beside what you use."""
    return service.quota_view(session, user, settings)


@router.get("/admin/users/{username}/quota", response_model=QuotaPublic, responses=errors(403))
def user_quota(
    username: Username, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> QuotaPublic:
    """A user's limits and usage (administrators only)."""
    return service.quota_of(session, user, settings, username)


@router.put("/admin/users/{username}/quota", response_model=QuotaPublic, responses=errors(403))
def set_user_quota(
    username: Username,
    body: QuotaSet,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> QuotaPublic:
    """Set a user's own limits (administrators only); a limit left empty follows the server's
    default."""
    return service.set_quota(session, user, settings, username, body)
