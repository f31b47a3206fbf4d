"""Evaluations through the client: launch one, read its metrics, page through its samples and
download them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from tuneforge.client.base import body, page_query
from tuneforge.client.jobs import JobsClient
from tuneforge.schemas.evaluations import EvaluationPublic, SamplesPage
from tuneforge.schemas.jobs import JobPublic


class EvaluationsClient(JobsClient):
    """The client's evaluation methods (an evaluation is an `evaluate` job)."""

    def evaluate(self, spec: dict[str, Any] | BaseModel) -> JobPublic:
        """Launch an evaluation (an `evaluate` job; see `EvaluationSpec`): `wait` for it, then
        read `evaluation`. Refused at once when the dataset or a model is not yours."""
        return self.create_job("evaluate", body(spec))

    def evaluation(self, job_id: str) -> EvaluationPublic:
        """A finished evaluation's metrics per model, their difference (`comparison`: fine-tune
        vs base, positive when the fine-tune does better; `difference`: B - A) and the details
        (`ApiError` 409 while it runs)."""
        return EvaluationPublic.model_validate(self._call("GET", f"/evaluations/{job_id}"))

    def evaluation_samples(
        self, job_id: str, offset: int = 0, limit: int = 50, filter: str | None = None
    ) -> SamplesPage:
        """A page of the samples with their reference, answers and scores; `filter` keeps only
        `a_right_b_wrong`, `a_wrong_b_right`, `both_right`, `both_wrong`, `a_right` or
        `a_wrong` ones."""
        params = page_query(offset, limit, filter=filter)
        return SamplesPage.model_validate(
            self._call("GET", f"/evaluations/{job_id}/samples", params=params)
        )

    def download_evaluation(
        self, job_id: str, fmt: Literal["csv", "jsonl"], path: str | Path
    ) -> Path:
        """Save every sample of an evaluation as CSV or JSON Lines at `path` (streamed)."""
        return self._save(f"/evaluations/{job_id}/samples.{fmt}", Path(path))
