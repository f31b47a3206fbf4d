"""Training runs through the client: launch, resume and clone them, read their metrics and
compare them, estimate a run before launching it, and the catalog, presets and
recommendations that help choose its settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tuneforge.client.base import body
from tuneforge.client.jobs import JobsClient
from tuneforge.schemas.jobs import JobPublic
from tuneforge.schemas.trainings import Comparison, EstimatePublic, RunMetrics


class TrainingClient(JobsClient):
    """The client's training methods (a run is a `train` job)."""

    def train(self, spec: dict[str, Any] | BaseModel) -> JobPublic:
        """Launch a training run (a `train` job) of any trainer (`spec["trainer"]`: sft, dpo,
        grpo...; `start_from` continues one of your models); refused with a message saying what
        to change when it cannot work or fit this machine."""
        return self.create_job("train", body(spec))

    def resume(self, job_id: str) -> JobPublic:
        """Queue a failed or cancelled run again; it continues from its newest checkpoint."""
        return JobPublic.model_validate(self._call("POST", f"/jobs/{job_id}/resume"))

    def clone(self, job_id: str, **changes: Any) -> JobPublic:
        """Launch a new run with another run's settings, changed by `changes`."""
        spec = {**self.get_job(job_id).spec, **changes}
        return self.train(spec)

    def metrics(self, job_id: str) -> RunMetrics:
        """A run's metric series (`[step, value]` points) and sample generations."""
        return RunMetrics.model_validate(self._call("GET", f"/jobs/{job_id}/metrics"))

    def compare(self, job_ids: list[str]) -> Comparison:
        """Runs side by side: their curves and the settings in which they differ."""
        return Comparison.model_validate(
            self._call("GET", "/trainings/compare", params={"ids": job_ids})
        )

    def estimate(self, spec: dict[str, Any] | BaseModel) -> EstimatePublic:
        """Memory, duration and recommendations for a run, without launching it."""
        return EstimatePublic.model_validate(
            self._call("POST", "/trainings/estimate", json=body(spec))
        )

    def recommendations(
        self, dataset_id: str, base_model: str, trainer: str = "sft"
    ) -> list[dict[str, Any]]:
        """Suggested settings for a dataset, a model and a training method, each with why."""
        params = {"dataset_id": dataset_id, "base_model": base_model, "trainer": trainer}
        found: list[dict[str, Any]] = self._call("GET", "/trainings/recommendations", params=params)
        return found

    def catalog(self) -> list[dict[str, Any]]:
        """The models that can be fine-tuned."""
        entries: list[dict[str, Any]] = self._call("GET", "/catalog")
        return entries

    def presets(self, trainer: str | None = None) -> list[dict[str, Any]]:
        """The presets (of one trainer, such as `dpo`, when given): a good start for each model
        and method."""
        params = {"trainer": trainer} if trainer else None
        found: list[dict[str, Any]] = self._call("GET", "/trainings/presets", params=params)
        return found

    def preset(self, preset_id: str) -> dict[str, Any]:
        """A preset's settings (a spec without `dataset_id`)."""
        values: dict[str, Any] = self._call("GET", f"/trainings/presets/{preset_id}")
        return values
