"""Who am I, logging in for an API token, and managing one's API tokens."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from tuneforge.api.deps import CurrentUser, SessionDep, SettingsDep
from tuneforge.api.openapi import errors
from tuneforge.errors import Conflict
from tuneforge.services import accounts
from tuneforge.services.auth import login as check_login

router = APIRouter(tags=["auth"])


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The user's id.")
    username: str = Field(description="The user's name.")
    is_admin: bool = Field(description="Administrators see and manage everyone's work.")
    created_at: datetime = Field(description="When the account was created.")


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="What the token is for.")


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The token's id (not the secret).")
    name: str = Field(description="What the token is for.")
    prefix: str = Field(description="The first characters of the secret, to recognise it.")
    created_at: datetime = Field(description="When it was created.")
    last_used_at: datetime | None = Field(description="When it was last used.")


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret. It is shown only this once: keep it safe.")


class LoginRequest(BaseModel):
    username: str = Field(max_length=64, description="Your user name.")
    password: str = Field(max_length=1024, description="Your password.")
    token_name: str = Field(
        default="login", max_length=100, description="A name for the API token this login creates."
    )


@router.post(
    "/auth/login",
    response_model=TokenCreated,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 409, 429),
)
def login(
    body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenCreated:
    """Trade a user name and password for a new API token (in `local` auth mode)."""
    if settings.auth_mode != "local":
        raise Conflict(f"Logging in is not used in `{settings.auth_mode}` auth mode.")
    address = request.client.host if request.client else "unknown"
    user = check_login(session, request.app.state.limiter, address, body.username, body.password)
    token, secret = accounts.create_token(session, user, body.token_name)
    return TokenCreated(token=secret, **TokenPublic.model_validate(token).model_dump())


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, user: CurrentUser) -> list[TokenPublic]:
    return [TokenPublic.model_validate(t) for t in accounts.list_tokens(session, user)]


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, session: SessionDep, user: CurrentUser) -> TokenCreated:
    token, secret = accounts.create_token(session, user, body.name)
    return TokenCreated(token=secret, **TokenPublic.model_validate(token).model_dump())


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, session: SessionDep, user: CurrentUser) -> None:
    accounts.revoke_token(session, user, token_id)
