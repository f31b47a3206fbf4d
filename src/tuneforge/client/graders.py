"""Reward graders through the client: the library of grader types, and trying a grader set on a
completion before a GRPO run (or a rewards evaluation) uses it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneforge.client.base import BaseClient


class GradersClient(BaseClient):
    """The client's grader methods."""

    def grader_library(self) -> list[dict[str, Any]]:
        """Every grader type: `type`, `title`, `explanation`, an `example` spec and the
        `schema` of its fields."""
        library: list[dict[str, Any]] = self._call("GET", "/trainings/graders/library")
        return library

    def try_graders(
        self,
        graders: Sequence[Mapping[str, Any]],
        completion: str,
        row: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """How `graders` grade `completion`, an answer to the dataset row `row` (its reference
        columns; a `prompt` for a judge): `grades` (each `name`, `type`, `weight`, `score`,
        `reason`), `total` and `max_total`. A judge grader calls its endpoint for real, with
        the key from your secrets."""
        body = {"graders": list(graders), "completion": completion, "row": dict(row or {})}
        trial: dict[str, Any] = self._call("POST", "/trainings/graders/try", json=body)
        return trial
