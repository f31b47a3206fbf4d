"""An API token's last use is written at most once a minute: reading with a token writes nothing
the rest of the time (each write would lock the token's row, on SQLite the whole database)."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import event, update

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import ApiToken
from tuneforge.services import accounts


def test_a_token_s_use_is_written_once_a_minute(settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        user = accounts.create_user(session, "ada", "password-ada")
        token, secret = accounts.create_token(session, user, "script")
    updates: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(_conn, _cursor, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    def use() -> ApiToken:
        with transaction(factory, read_only=True) as session:
            found = accounts.user_for_token(session, secret)
            assert found is not None and found.username == "ada"
        with transaction(factory) as session:
            stored = session.get(ApiToken, token.id)
            assert stored is not None
            return stored

    first = use().last_used_at
    assert first is not None and len(updates) == 1
    assert use().last_used_at == first and len(updates) == 1  # within the minute: no write
    earlier = first - accounts.TOKEN_USE_PRECISION - timedelta(seconds=1)
    with transaction(factory) as session:
        session.execute(
            update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=earlier)
        )
    updates.clear()
    later = use().last_used_at
    assert later is not None and later >= first and len(updates) == 1
    engine.dispose()


def test_a_request_does_not_wait_to_note_a_token_s_use(settings) -> None:
    """Another transaction holding the token's row (on SQLite, the write lock) until its request
    ends: a request of the same token goes on at once, and leaves the note to a later one."""
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        user = accounts.create_user(session, "ada", "password-ada")
        token, secret = accounts.create_token(session, user, "script")
    with transaction(factory) as holder:
        holder.execute(update(ApiToken).where(ApiToken.id == token.id).values(name="held"))
        started = time.monotonic()
        with transaction(factory, read_only=True) as session:
            found = accounts.user_for_token(session, secret)
            assert found is not None and found.username == "ada"
        assert time.monotonic() - started < 5  # not the database's 30 s wait for a lock
    with transaction(factory) as session:
        stored = session.get(ApiToken, token.id)
        assert stored is not None and stored.last_used_at is None and stored.name == "held"
    engine.dispose()
