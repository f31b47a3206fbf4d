"""Users and their API tokens. A token is read by its owner's id (administrators manage only
their own tokens too) or, to authenticate a request, by the hash of its secret."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.tables import ApiToken, User


def user_named(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).first()


def tokens_of(session: Session, owner_id: str) -> list[ApiToken]:
    """The owner's tokens, oldest first."""
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.owner_id == owner_id).order_by(ApiToken.created_at)
        )
    )


def find_token(session: Session, owner_id: str, token_id: str) -> ApiToken | None:
    return session.scalars(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.owner_id == owner_id)
    ).first()


def token_with_hash(session: Session, token_hash: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()


def lock_token(session: Session, token: ApiToken) -> bool:
    """Lock `token`'s row for this transaction, unless another one holds it (then False, at
    once: `SKIP LOCKED` on PostgreSQL; SQLite locks the whole database when it writes)."""
    statement = select(ApiToken.id).where(ApiToken.id == token.id)
    return session.scalar(statement.with_for_update(skip_locked=True)) is not None
