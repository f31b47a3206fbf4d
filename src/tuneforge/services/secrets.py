"""A user's secrets (API keys, tokens): set, listed by name and deleted; their rules (valid
names and values) over the queries of `db/repositories/secrets.py`.

Values are encrypted at rest (`tuneforge.secretbox`). They are never returned by the API,
never logged and never put in job specs: a worker reads the ones it needs, by name, with
`db.repositories.secrets.secret_values`. Every user has their own names, administrators too:
nobody reads another user's secrets.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from tuneforge.db.repositories import secrets
from tuneforge.db.tables import Secret, User, utcnow
from tuneforge.errors import InvalidInput, NotFound
from tuneforge.secretbox import SecretBox
from tuneforge.settings import Settings

NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_VALUE_CHARS = 4096


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise InvalidInput(
            f"The secret name {name[:80]!r} is not valid: use capital letters, digits and "
            "underscores, starting with a letter, at most 64 characters (like HF_TOKEN)."
        )


def set_secret(session: Session, settings: Settings, user: User, name: str, value: str) -> Secret:
    """Create the user's secret `name`, or replace its value."""
    check_name(name)
    if not value.strip():
        raise InvalidInput("A secret's value cannot be empty.")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"A secret's value is at most {MAX_VALUE_CHARS} characters.")
    ciphertext = SecretBox(settings).seal(value)
    secret = secrets.find_secret(session, user.id, name)
    if secret is None:
        secret = Secret(owner_id=user.id, name=name, ciphertext=ciphertext)
        session.add(secret)
    else:
        secret.ciphertext = ciphertext
        secret.updated_at = utcnow()
    session.flush()
    return secret


def list_secrets(session: Session, user: User) -> list[Secret]:
    """The user's secrets by name (read only their names and dates)."""
    return secrets.secrets_of(session, user.id)


def has_secret(session: Session, user: User, name: str) -> bool:
    return secrets.has_secret(session, user.id, name)


def delete_secret(session: Session, user: User, name: str) -> None:
    secret = secrets.find_secret(session, user.id, name)
    if secret is None:
        raise NotFound(f"No secret {name[:80]}.")
    session.delete(secret)
