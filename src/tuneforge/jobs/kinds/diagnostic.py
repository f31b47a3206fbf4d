"""The `diagnostic` kind: checks the worker pipeline (administrators only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from tuneforge.jobs.kind import JobKind, register
from tuneforge.strict_numbers import Number, OptionalNumber


class DiagnosticSpec(BaseModel):
    """Checks the worker pipeline: runs for a while, reporting every second."""

    model_config = ConfigDict(extra="forbid")

    seconds: Number = Field(default=5, ge=0, le=3600, description="How long the job runs.")
    fail: StrictBool = Field(default=False, description="Fail at the end instead of succeeding.")
    fail_after: OptionalNumber = Field(
        default=None, ge=0, le=3600, description="Fail after this many seconds (implies fail)."
    )
    ignore_cancel: StrictBool = Field(
        default=False,
        description="Ignore cancel requests, to check that a stuck worker is killed.",
    )


class DiagnosticResult(BaseModel):
    ticks: int = Field(description="How many times it reported.")
    seconds: float = Field(description="How long it ran.")


class DiagnosticKind(JobKind[DiagnosticSpec, DiagnosticResult]):
    name = "diagnostic"
    description = "Checks the worker pipeline (admins only)."
    worker = "tuneforge.jobs.workers.diagnostic:run"
    spec = DiagnosticSpec
    result = DiagnosticResult
    admin_only = True


register(DiagnosticKind())
