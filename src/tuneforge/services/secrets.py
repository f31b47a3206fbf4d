"""A user's secrets (API keys, tokens): set, listed by name, deleted, and read only by workers.

Values are encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from
the server's secret key (`Settings.session_secret`) with HKDF, so no other setting is needed.
They are never returned by the API, never logged and never put in job specs: a worker reads the
ones it needs, by name, with `secret_values`. Every user has their own names, administrators
too: nobody reads another user's secrets.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.tables import Secret, User, utcnow
from tuneforge.errors import InvalidInput, NotFound, SecretUnreadable
from tuneforge.settings import Settings

NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_VALUE_CHARS = 4096
KEY_INFO = b"tuneforge secrets v1"


def _fernet(settings: Settings) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(
        settings.session_secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise InvalidInput(
            f"The secret name {name[:80]!r} is not valid: use capital letters, digits and "
            "underscores, starting with a letter, at most 64 characters (like HF_TOKEN)."
        )


def _find(session: Session, owner_id: str, name: str) -> Secret | None:
    return session.scalars(
        select(Secret).where(Secret.owner_id == owner_id, Secret.name == name)
    ).first()


def set_secret(session: Session, settings: Settings, user: User, name: str, value: str) -> Secret:
    """Create the user's secret `name`, or replace its value."""
    check_name(name)
    if not value.strip():
        raise InvalidInput("A secret's value cannot be empty.")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"A secret's value is at most {MAX_VALUE_CHARS} characters.")
    ciphertext = _fernet(settings).encrypt(value.encode())
    secret = _find(session, user.id, name)
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
    return list(
        session.scalars(select(Secret).where(Secret.owner_id == user.id).order_by(Secret.name))
    )


def has_secret(session: Session, user: User, name: str) -> bool:
    return _find(session, user.id, name) is not None


def delete_secret(session: Session, user: User, name: str) -> None:
    secret = _find(session, user.id, name)
    if secret is None:
        raise NotFound(f"No secret {name[:80]}.")
    session.delete(secret)


def secret_values(
    session: Session, settings: Settings, owner_id: str, names: Iterable[str]
) -> dict[str, str]:
    """The values of those of `names` that the owner has set (for a worker, never for the API);
    `SecretUnreadable` when one no longer decrypts."""
    wanted = set(names)
    if not wanted:
        return {}
    fernet = _fernet(settings)
    values: dict[str, str] = {}
    rows = session.scalars(
        select(Secret).where(Secret.owner_id == owner_id, Secret.name.in_(wanted))
    )
    for secret in rows:
        try:
            values[secret.name] = fernet.decrypt(secret.ciphertext).decode()
        except InvalidToken:
            raise SecretUnreadable(
                f"The secret {secret.name} can no longer be read: the server's secret key "
                "(TUNEFORGE_SECRET_KEY) changed since it was set. Set it again."
            ) from None
    return values
