"""Synthesis through the client: make a raw dataset from documents, follow it, resume it."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tuneforge.client.jobs import JobsClient
from tuneforge.schemas.datasets import DatasetPublic
from tuneforge.schemas.synthesis import SynthesisProgress


class SynthesisClient(JobsClient):
    """The client's synthesis methods."""

    def synthesize(
        self,
        paths: list[str | Path] | str | Path,
        spec: dict[str, Any] | BaseModel,
        name: str | None = None,
    ) -> DatasetPublic:
        """Make a raw dataset from documents (PDF, DOCX, PPTX, HTML, Markdown, TXT, or ZIPs of
        them, streamed from disk) with a model writing examples for each chunk, e.g. `spec={
        "generator": {"kind": "endpoint", "base_url": "http://localhost:11434/v1", "model":
        "gemma3:4b"}, "task": "qa"}`. In a job: the dataset comes back `processing` (with
        `job_id`); `synthesis_progress` shows how far it is, `wait_dataset` waits for it."""
        files = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
        text = spec.model_dump_json() if isinstance(spec, BaseModel) else json.dumps(spec)
        data = {"spec": text} | ({} if name is None else {"name": name})
        with ExitStack() as stack:
            parts = [("files", (p.name, stack.enter_context(p.open("rb")))) for p in files]
            made = self._call(
                "POST", "/datasets/synthesize", files=parts, data=data, timeout=self._work_timeout
            )
        return DatasetPublic.model_validate(made)

    def synthesis_progress(self, dataset_id: str) -> SynthesisProgress:
        """How far the synthesis making `dataset_id` is: chunks done of all, pairs kept,
        dropped by reason, tokens, and the last pairs kept with their sources."""
        shown = self._call("GET", f"/datasets/{dataset_id}/synthesis")
        return SynthesisProgress.model_validate(shown)

    def resume_synthesis(self, dataset_id: str) -> DatasetPublic:
        """Queue a failed or cancelled synthesis again; finished chunks are not generated
        again."""
        resumed = self._call("POST", f"/datasets/{dataset_id}/synthesis/resume")
        return DatasetPublic.model_validate(resumed)
