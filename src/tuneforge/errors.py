"""Domain errors, raised anywhere in TuneForge and mapped to HTTP in one place (`api/errors.py`).

This module imports nothing of TuneForge, so every layer may raise these.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class PermissionDenied(DomainError):
    code = "forbidden"


class InvalidInput(DomainError):
    code = "invalid_input"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class RateLimited(DomainError):
    code = "rate_limited"


class QuotaExceeded(Conflict):
    """A user's storage or concurrent-jobs quota is reached (an administrator sets it)."""

    code = "quota_exceeded"


class DailyQuotaExceeded(RateLimited):
    """A user has started as many jobs in the last 24 hours as their quota allows."""

    code = "quota_exceeded"


class ModelUnavailable(DomainError):
    """The model's weights cannot be had here: the hub is unreachable, the licence is not
    accepted, or a local directory is missing."""

    code = "model_unavailable"


class EngineUnavailable(DomainError):
    """The inference engine asked for cannot run here (a missing package or GPU, or a model
    the engine cannot serve)."""

    code = "engine_unavailable"


class InferenceFailed(DomainError):
    """The inference server could not answer: it did not start, or a generation broke off."""

    code = "inference_failed"


class ServerStopping(DomainError):
    """The server was asked to stop (SIGTERM) while an answer was being streamed."""

    code = "server_stopping"


class DiskFull(DomainError):
    """A write ran out of space on the disk (or the quota) where TuneForge keeps its data;
    the message says how much is left (`storage/disk_full.py` makes it)."""

    code = "disk_full"


class SecretUnreadable(Conflict):
    """A stored secret no longer decrypts: the server's secret key changed since it was set."""

    code = "secret_unreadable"


class JobCancelled(Exception):
    """Raised inside a worker (or a headless run) when its job was asked to stop."""
