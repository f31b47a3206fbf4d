"""Users, passwords and API tokens: the rules (valid names, password length, hashing, a token
shown once) over the queries of `db/repositories/users.py`."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from tuneforge.db.repositories import users
from tuneforge.db.tables import ApiToken, User, utcnow
from tuneforge.errors import Conflict, InvalidInput, NotFound

LOCAL_USER = "local"
TOKEN_PREFIX = "tf_"  # noqa: S105 (a prefix, not a secret)
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
#: A token's `last_used_at` is written at most this often: a request reading with a token then
#: writes nothing (each write would lock the token's row, on SQLite the whole database, until
#: the request ends, so every client of one token would wait for the others).
TOKEN_USE_PRECISION = timedelta(minutes=1)
_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one for a known user.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _check_username(username: str) -> None:
    if not USERNAME.match(username):
        raise InvalidInput(
            "A user name has 1 to 64 letters, digits or . _ @ -, starting with a letter or digit."
        )


def get_user(session: Session, username: str) -> User | None:
    return users.user_named(session, username)


def create_user(
    session: Session, username: str, password: str | None, *, is_admin: bool = False
) -> User:
    _check_username(username)
    if password is not None and len(password) < 8:
        raise InvalidInput("A password needs at least 8 characters.")
    if get_user(session, username) is not None:
        raise Conflict(f"The user {username!r} already exists.")
    user = User(
        username=username,
        password_hash=_hasher.hash(password) if password is not None else None,
        is_admin=is_admin,
    )
    session.add(user)
    session.flush()
    return user


def ensure_user(session: Session, username: str, *, is_admin: bool = False) -> User:
    """The user with this name, created on first sight (implicit and gateway users).

    First sight can race: two first requests of one user (the second reads the first's user
    once its own insert fails), or a request that only reads and on SQLite cannot take the write
    lock once another writer has committed (a transaction of its own creates the user)."""
    user = get_user(session, username)
    if user is not None:
        return user
    try:
        with session.begin_nested():
            return create_user(session, username, None, is_admin=is_admin)
    except IntegrityError:
        pass  # another request created it meanwhile
    except OperationalError:
        # A read transaction that could not write: a transaction of its own, which waits for
        # the write lock, finds or creates the user, and this one takes it as it was stored.
        writer = session.get_bind().execution_options(read_only=False)
        with Session(writer, expire_on_commit=False) as own, own.begin():
            user = get_user(own, username) or create_user(own, username, None, is_admin=is_admin)
        return session.merge(user, load=False)
    user = get_user(session, username)
    return user if user is not None else create_user(session, username, None, is_admin=is_admin)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user if the password is right, else None (timing does not reveal which part failed)."""
    user = get_user(session, username)
    try:
        _hasher.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user if user is not None and user.password_hash else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """A new API token; the secret is returned once and only its hash is kept."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("A token name has 1 to 100 characters.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(owner_id=user.id, name=name, token_hash=_digest(secret), prefix=secret[:10])
    session.add(token)
    session.flush()
    return token, secret


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    return users.tokens_of(session, user.id)


def revoke_token(session: Session, user: User, token_id: str) -> None:
    token = users.find_token(session, user.id, token_id)
    if token is None:
        raise NotFound("No such token.")
    session.delete(token)


def user_for_token(session: Session, secret: str) -> User | None:
    if not secret.startswith(TOKEN_PREFIX):
        return None
    found = users.token_with_hash(session, _digest(secret))
    if found is None:
        return None
    token, user = found
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_PRECISION:
        # Skipped when it would wait for a lock; the token's next request tries again.
        users.note_token_use(session, token, now)
    return user
