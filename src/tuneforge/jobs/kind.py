"""What a kind of job is, and the registry of kinds.

A kind (`jobs/kinds/<name>.py`) owns everything the house knows about its jobs: the typed spec
they are created with and the typed result they end with, who may run them, the check before one
is queued, what is recorded when one is queued, how the records that follow a job (an export, a
dataset being filled) settle when its status changes, and which worker function runs it (named
by import path, so the web process never imports worker code). Adding a kind is one module under
`jobs/kinds/` that calls `register()`, plus its worker under `jobs/workers/`; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tuneforge.db.tables import Job, User
    from tuneforge.settings import Settings

SpecT = TypeVar("SpecT")
ResultT = TypeVar("ResultT", bound=BaseModel)


class JobKind(Generic[SpecT, ResultT]):
    """One kind of job. Subclasses set the class attributes and override the hooks they need;
    the defaults check nothing, record nothing and settle nothing."""

    name: ClassVar[str]
    #: One line for the API's schema: what a job of this kind does.
    description: ClassVar[str]
    #: The worker entry, `module:function(spec, ctx) -> result`, imported only by the worker.
    worker: ClassVar[str]
    #: The spec: a model, or an annotated union of models (see `spec_type`).
    spec: ClassVar[Any]
    result: ClassVar[type[BaseModel]]
    admin_only: ClassVar[bool] = False
    #: Whether `POST /jobs` creates it; other kinds are queued by the service that owns them.
    public: ClassVar[bool] = True

    def spec_type(self) -> Any:
        """The spec's type as of now (a kind whose spec grows, such as training's union of
        recipes, computes it here)."""
        return self.spec

    def validate(self, spec: Any) -> SpecT:
        validated: SpecT = TypeAdapter(self.spec_type()).validate_python(spec)
        return validated

    def spec_dump(self, spec: SpecT) -> dict[str, Any]:
        """The spec as stored in the job's row."""
        dumped: dict[str, Any] = TypeAdapter(self.spec_type()).dump_python(spec, mode="json")
        return dumped

    def check(self, session: Session, user: User, settings: Settings, spec: SpecT) -> None:
        """Refuse a job that cannot work here, before it is queued, saying what to change."""

    def on_queued(self, session: Session, user: User, job: Job, spec: SpecT) -> None:
        """Record what follows the newly queued `job` (in the same transaction)."""

    def settle(self, session: Session, job: Job) -> None:
        """Bring the records that follow `job` in line with its new status; called by
        `transition()` inside the move's transaction, so no read ever has to."""


_KINDS: dict[str, JobKind[Any, Any]] = {}


def register(kind: JobKind[Any, Any]) -> JobKind[Any, Any]:
    """Make `kind` known by its name (each module under `jobs/kinds/` registers its own)."""
    _KINDS[kind.name] = kind
    return kind


@cache
def _discover() -> None:
    from tuneforge.jobs import kinds

    for module in pkgutil.iter_modules(kinds.__path__):
        importlib.import_module(f"{kinds.__name__}.{module.name}")


def all_kinds() -> dict[str, JobKind[Any, Any]]:
    """Every kind, by name."""
    _discover()
    return dict(_KINDS)


def kind_of(name: str) -> JobKind[Any, Any]:
    """The kind called `name`; `KeyError` for an unknown one."""
    _discover()
    return _KINDS[name]
