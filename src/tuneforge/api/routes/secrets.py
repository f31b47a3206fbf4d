"""A user's secrets: list their names, set one, delete one. Values go in and never come out."""

from __future__ import annotations

from fastapi import APIRouter, status

from tuneforge.api.deps import CurrentUser, SessionDep, SettingsDep
from tuneforge.schemas.secrets import SecretName, SecretPublic, SecretSet
from tuneforge.services import secrets as service

router = APIRouter(prefix="/secrets", tags=["secrets"])


@router.get("", response_model=list[SecretPublic])
def list_secrets(session: SessionDep, user: CurrentUser) -> list[SecretPublic]:
    """Your secrets' names and dates (never their values)."""
    return [SecretPublic.model_validate(s) for s in service.list_secrets(session, user)]


@router.put("/{name}", response_model=SecretName)
def set_secret(
    name: str, body: SecretSet, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> SecretName:
    """Create the secret `name` (capital letters, digits, `_`), or replace its value."""
    return SecretName.model_validate(service.set_secret(session, settings, user, name, body.value))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_secret(name: str, session: SessionDep, user: CurrentUser) -> None:
    service.delete_secret(session, user, name)
