"""Users' secrets, always read by their owner's id (administrators read only their own too):
one by name, all of them by name, and their values for a worker (`tuneforge.secretbox`
decrypts them)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.tables import Secret
from tuneforge.secretbox import SecretBox
from tuneforge.settings import Settings


def find_secret(session: Session, owner_id: str, name: str) -> Secret | None:
    return session.scalars(
        select(Secret).where(Secret.owner_id == owner_id, Secret.name == name)
    ).first()


def has_secret(session: Session, owner_id: str, name: str) -> bool:
    return find_secret(session, owner_id, name) is not None


def secrets_of(session: Session, owner_id: str) -> list[Secret]:
    """The owner's secrets, by name."""
    return list(
        session.scalars(select(Secret).where(Secret.owner_id == owner_id).order_by(Secret.name))
    )


def secret_values(
    session: Session, settings: Settings, owner_id: str, names: Iterable[str]
) -> dict[str, str]:
    """The values of those of `names` that the owner has set (for a worker, never for the API);
    `SecretUnreadable` when one no longer decrypts."""
    wanted = set(names)
    if not wanted:
        return {}
    box = SecretBox(settings)
    rows = session.scalars(
        select(Secret).where(Secret.owner_id == owner_id, Secret.name.in_(wanted))
    )
    return {secret.name: box.open(secret.name, secret.ciphertext) for secret in rows}
