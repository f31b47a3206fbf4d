"""Quotas for people: a user reads their own limits and usage; an administrator reads and
sets anyone's (`jobs/quotas.py` holds the rules that enforce them)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.repositories import quotas as repository
from tuneforge.db.repositories.users import user_named
from tuneforge.db.tables import User, UserQuota, utcnow
from tuneforge.errors import NotFound, PermissionDenied
from tuneforge.jobs.quotas import limits_for, usage_of
from tuneforge.schemas.quotas import QuotaPublic, QuotaSet
from tuneforge.settings import Settings


def quota_view(session: Session, user: User, settings: Settings) -> QuotaPublic:
    """`user`'s limits beside what they use."""
    limits = limits_for(session, user, settings)
    usage = usage_of(session, user)
    own = repository.quota_of(session, user.id)
    return QuotaPublic(
        username=user.username,
        storage_bytes_limit=limits.storage_bytes,
        storage_bytes_used=usage.storage_bytes,
        storage_bytes_reserved=usage.storage_reserved,
        concurrent_jobs_limit=limits.concurrent_jobs,
        jobs_in_flight=usage.jobs_in_flight,
        jobs_per_day_limit=limits.jobs_per_day,
        jobs_today=usage.jobs_today,
        own=QuotaSet.model_validate(own) if own is not None else QuotaSet(),
    )


def _account(session: Session, admin: User, username: str) -> User:
    if not admin.is_admin:
        raise PermissionDenied("Only administrators can read or set other users' quotas.")
    user = user_named(session, username)
    if user is None:
        raise NotFound(f"There is no user {username!r}.")
    return user


def quota_of(session: Session, admin: User, settings: Settings, username: str) -> QuotaPublic:
    """An administrator's view of `username`'s quota."""
    return quota_view(session, _account(session, admin, username), settings)


def set_quota(
    session: Session, admin: User, settings: Settings, username: str, limits: QuotaSet
) -> QuotaPublic:
    """Replace `username`'s own limits (empty ones: the server's defaults)."""
    return store_quota(session, settings, _account(session, admin, username), limits)


def store_quota(session: Session, settings: Settings, user: User, limits: QuotaSet) -> QuotaPublic:
    """Keep `limits` as `user`'s own (for the `tuneforge admin` command, which acts on the
    database directly, and for `set_quota`)."""
    own = repository.quota_of(session, user.id)
    if own is None:
        own = UserQuota(user_id=user.id)
        session.add(own)
    own.storage_bytes = limits.storage_bytes
    own.concurrent_jobs = limits.concurrent_jobs
    own.jobs_per_day = limits.jobs_per_day
    own.updated_at = utcnow()
    session.flush()
    return quota_view(session, user, settings)
