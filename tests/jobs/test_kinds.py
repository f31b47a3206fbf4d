"""Every registered job kind is whole: its worker entry resolves, takes its spec type and returns
its result type, and `POST /jobs` offers exactly the public kinds."""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from tuneforge.jobs.kind import JobKind, all_kinds
from tuneforge.schemas.jobs import job_create_type


def _members(spec_type: Any) -> list[type]:
    """The model classes a spec type admits (a model, or an annotated union of models)."""
    if typing.get_origin(spec_type) is typing.Annotated:
        spec_type = typing.get_args(spec_type)[0]
    if typing.get_origin(spec_type) in (typing.Union, __import__("types").UnionType):
        return [m for arg in typing.get_args(spec_type) for m in _members(arg)]
    assert isinstance(spec_type, type), spec_type
    return [spec_type]


KINDS = sorted(all_kinds().items())


def test_the_kinds_of_the_house_are_registered() -> None:
    assert {"dataset_import", "dataset_process", "diagnostic", "evaluate", "export", "train"} <= {
        name for name, _ in KINDS
    }


@pytest.mark.parametrize(("name", "kind"), KINDS, ids=[name for name, _ in KINDS])
def test_a_kinds_worker_takes_its_spec_and_returns_its_result(name: str, kind: JobKind) -> None:  # type: ignore[type-arg]
    module, _, function = kind.worker.partition(":")
    run = getattr(importlib.import_module(module), function)
    hints = typing.get_type_hints(run)
    first, _context = list(inspect.signature(run).parameters)
    accepted = hints[first]
    for member in _members(kind.spec_type()):
        assert issubclass(member, accepted), f"{name}: {member} is not a {accepted}"
    assert hints["return"] is kind.result, name
    assert issubclass(kind.result, BaseModel)
    assert kind.name == name and kind.description


def test_post_jobs_takes_the_public_kinds() -> None:
    union = typing.get_args(job_create_type())[0]
    offered = {
        typing.get_args(member.model_fields["kind"].annotation)[0]
        for member in typing.get_args(union)
    }
    assert offered == {name for name, kind in KINDS if kind.public}
    assert "dataset_import" not in offered  # queued by the datasets service, not by POST /jobs
