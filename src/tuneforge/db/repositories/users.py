"""Users and their API tokens. A token is read by its owner's id (administrators manage only
their own tokens too) or, to authenticate a request, by the hash of its secret."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
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


def token_with_hash(session: Session, token_hash: str) -> tuple[ApiToken, User] | None:
    """The token of this hash and its owner, in one query (every request with a token asks)."""
    statement = select(ApiToken, User).join(User, User.id == ApiToken.owner_id)
    row = session.execute(statement.where(ApiToken.token_hash == token_hash)).first()
    return None if row is None else (row[0], row[1])


def note_token_use(session: Session, token: ApiToken, now: datetime) -> None:
    """Set `token`'s `last_used_at` to `now` unless that would wait for a lock: another
    transaction holds the token's row (PostgreSQL, `SKIP LOCKED`) or the database's write lock
    (SQLite answers a read transaction that would write then at once). A request holds its
    locks until it ends, and waiting for them would hold its thread, which the holder may need
    to end."""
    with suppress(OperationalError), session.begin_nested():
        statement = select(ApiToken.id).where(ApiToken.id == token.id)
        if session.scalar(statement.with_for_update(skip_locked=True)) is not None:
            token.last_used_at = now
            session.flush()
