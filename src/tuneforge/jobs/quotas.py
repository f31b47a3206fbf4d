"""Per-user quotas: storage bytes, jobs queued or running at once, jobs started in 24 hours.

A user's limits are the server's defaults (the `quota_*` settings) with an administrator's
overrides on top; administrators have no limits but the ones set for them. `create_job` checks
them before any job is queued. A Hugging Face import may download only what is left of the
user's storage (`import_budget`), and that budget, stored in its job's spec, is reserved from the
quota until the job ends: imports started together share what is left instead of each taking
all of it, and storage counts what is being downloaded, not only what is finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from tuneforge.data.limits import size_text
from tuneforge.db.repositories import quotas
from tuneforge.db.tables import User, utcnow
from tuneforge.errors import DailyQuotaExceeded, QuotaExceeded
from tuneforge.settings import Settings

DAY = timedelta(hours=24)


@dataclass(frozen=True)
class Limits:
    """A user's limits; None: no limit."""

    storage_bytes: int | None
    concurrent_jobs: int | None
    jobs_per_day: int | None


@dataclass(frozen=True)
class Usage:
    storage_bytes: int
    storage_reserved: int
    jobs_in_flight: int
    jobs_today: int


def limits_for(session: Session, user: User, settings: Settings) -> Limits:
    """The server's defaults (none for administrators), each replaced by the user's own
    limit where an administrator set one."""
    defaults = (
        Limits(None, None, None)
        if user.is_admin
        else Limits(
            settings.quota_storage_bytes,
            settings.quota_concurrent_jobs,
            settings.quota_jobs_per_day,
        )
    )
    own = quotas.quota_of(session, user.id)
    if own is None:
        return defaults
    return Limits(
        defaults.storage_bytes if own.storage_bytes is None else own.storage_bytes,
        defaults.concurrent_jobs if own.concurrent_jobs is None else own.concurrent_jobs,
        defaults.jobs_per_day if own.jobs_per_day is None else own.jobs_per_day,
    )


def usage_of(session: Session, user: User) -> Usage:
    return Usage(
        storage_bytes=quotas.storage_used(session, user.id),
        storage_reserved=quotas.storage_reserved(session, user.id),
        jobs_in_flight=quotas.jobs_in_flight(session, user.id),
        jobs_today=quotas.jobs_since(session, user.id, utcnow() - DAY),
    )


def check_launch(session: Session, user: User, settings: Settings) -> None:
    """Refuse a new job when the user is at one of their limits, saying which, by how much,
    and what to do."""
    limits = limits_for(session, user, settings)
    if limits != Limits(None, None, None):
        quotas.hold_launches(session, user.id)
    if limits.jobs_per_day is not None:
        started = quotas.jobs_since(session, user.id, utcnow() - DAY)
        if started >= limits.jobs_per_day:
            raise DailyQuotaExceeded(
                f"Your quota allows {limits.jobs_per_day:,} jobs a day and you have started "
                f"{started:,} in the last 24 hours: try again later, or ask an administrator to "
                "raise it.",
                {"quota": "jobs_per_day", "limit": limits.jobs_per_day, "used": started},
            )
    if limits.concurrent_jobs is not None:
        running = quotas.jobs_in_flight(session, user.id)
        if running >= limits.concurrent_jobs:
            raise QuotaExceeded(
                f"Your quota allows {limits.concurrent_jobs:,} jobs queued or running at once "
                f"and you have {running:,}: wait for one to finish or cancel one, or ask an "
                "administrator to raise it.",
                {"quota": "concurrent_jobs", "limit": limits.concurrent_jobs, "used": running},
            )
    if limits.storage_bytes is not None:
        require_storage(session, user, limits.storage_bytes, incoming=0)


def require_storage(session: Session, user: User, limit: int, *, incoming: int) -> int:
    """Refuse when the user's storage, with what their jobs in flight have reserved and
    `incoming` more bytes, would pass `limit` (would reach it, for nothing incoming); the bytes
    taken (stored and reserved)."""
    used = quotas.storage_used(session, user.id)
    reserved = quotas.storage_reserved(session, user.id)
    taken = used + reserved
    if taken + incoming > limit if incoming else taken >= limit:
        held = (
            f", imports in progress have reserved {size_text(reserved)} more until they end"
            if reserved
            else ""
        )
        adding = f" and this adds {size_text(incoming)}" if incoming else ""
        wait = ", wait for an import to end" if reserved else ""
        raise QuotaExceeded(
            f"Your datasets, models and exports take {size_text(used)}{held}{adding}; your "
            f"storage quota is {size_text(limit)}. Delete some of them{wait}, or ask an "
            "administrator to raise it.",
            {"quota": "storage_bytes", "limit": limit, "used": used, "reserved": reserved},
        )
    return taken


def check_storage(session: Session, user: User, settings: Settings, incoming: int) -> None:
    """Refuse `incoming` new bytes (an upload) that would pass the user's storage quota."""
    limit = limits_for(session, user, settings).storage_bytes
    if limit is not None:
        require_storage(session, user, limit, incoming=incoming)


def import_budget(session: Session, user: User, settings: Settings) -> int | None:
    """The most a Hugging Face import of the user's may download, to be reserved with its job:
    the server's cap for users, lowered to what is left of their storage quota once their
    other imports in progress have their reservations (None for an administrator without a
    quota). Holds the user's launches until the transaction ends, so that two imports started
    together cannot both count the same room; refuses when there is none."""
    caps = [] if user.is_admin else [settings.hub_import_max_bytes]
    limit = limits_for(session, user, settings).storage_bytes
    if limit is not None:
        quotas.hold_launches(session, user.id)
        caps.append(limit - require_storage(session, user, limit, incoming=0))
    return min(caps) if caps else None
