"""Datasets through the client: upload or import raw data, map and process it, read its rows,
report and statistics, and wait for the jobs that import or process large data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from tuneforge.client.base import body, given, page_query
from tuneforge.client.jobs import JobsClient
from tuneforge.data.augment.spec import AugmentSpec
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.mapping import MappingSpec
from tuneforge.data.validation import ValidationReport
from tuneforge.schemas.augmentation import AugmentPreview
from tuneforge.schemas.datasets import DatasetList, DatasetPublic, RowsPage


class DatasetsClient(JobsClient):
    """The client's dataset methods."""

    def upload_dataset(self, path: str | Path, name: str | None = None) -> DatasetPublic:
        """Upload a data file (streamed from disk) as a raw dataset; the server recognises its
        format and proposes a mapping (`mapping`), or says in `warnings` why it could not."""
        path = Path(path)
        with path.open("rb") as file:
            created = self._call(
                "POST",
                "/datasets",
                files={"file": (path.name, file)},
                data=None if name is None else {"name": name},
                timeout=self._work_timeout,
            )
        return DatasetPublic.model_validate(created)

    def import_dataset(
        self,
        path: str,
        source: Literal["huggingface", "server_path"] = "huggingface",
        *,
        subset: str | None = None,
        split: str | None = None,
        revision: str | None = None,
        name: str | None = None,
    ) -> DatasetPublic:
        """Bring in a Hugging Face dataset by id (`tatsu-lab/alpaca`; administrators may also
        give a dataset directory on the server) or, with `source="server_path"`, a data file on
        the server (administrators only). It is read in a job: the dataset comes back
        `processing`, with `job_id`, and `wait_dataset` waits for it."""
        request = {"source": source, "path": path} | given(
            subset=subset, split=split, revision=revision, name=name
        )
        return DatasetPublic.model_validate(self._call("POST", "/datasets/import", json=request))

    def list_datasets(
        self, kind: str | None = None, offset: int = 0, limit: int = 50
    ) -> DatasetList:
        """Your datasets, newest first; `kind` is `raw` or `processed` (default: both)."""
        params = page_query(offset, limit, kind=kind)
        return DatasetList.model_validate(self._call("GET", "/datasets", params=params))

    def get_dataset(self, dataset_id: str) -> DatasetPublic:
        return DatasetPublic.model_validate(self._call("GET", f"/datasets/{dataset_id}"))

    def delete_dataset(self, dataset_id: str) -> None:
        self._call("DELETE", f"/datasets/{dataset_id}")

    def dataset_rows(
        self,
        dataset_id: str,
        split: str | None = None,
        offset: int = 0,
        limit: int = 20,
        thumbnails: bool = False,
    ) -> RowsPage:
        """A page of rows of one split (default: the first), long values shortened; with
        `thumbnails`, images as small JPEG data: URLs instead of their byte count."""
        params = page_query(offset, limit, split=split)
        if thumbnails:
            params["thumbnails"] = "true"
        return RowsPage.model_validate(
            self._call("GET", f"/datasets/{dataset_id}/rows", params=params)
        )

    def preview_mapping(
        self, dataset_id: str, mapping: dict[str, Any] | MappingSpec
    ) -> list[dict[str, Any]]:
        """The raw dataset's first rows mapped: each a dict with `row`, `rendered` (the text in
        Gemma's chat format, or None), `problems` (what is wrong with the row) and `images`
        (a thumbnail data: URL for each `<start_of_image>`, in order)."""
        examples: list[dict[str, Any]] = self._call(
            "POST", f"/datasets/{dataset_id}/preview", json=body(mapping)
        )
        return examples

    def process_dataset(
        self, dataset_id: str, config: dict[str, Any] | ProcessingConfig
    ) -> DatasetPublic:
        """Process a raw dataset into a new processed one. Small data is processed at once
        (status `ready` or `failed`); large data in a job (status `processing`, with `job_id`):
        `wait_dataset` waits for it."""
        processed = self._call(
            "POST",
            f"/datasets/{dataset_id}/process",
            json=body(config),
            timeout=self._work_timeout,
        )
        return DatasetPublic.model_validate(processed)

    def preview_augmentation(
        self,
        dataset_id: str,
        spec: dict[str, Any] | AugmentSpec,
        count: int = 5,
        price_per_1k_tokens: float = 0.0,
    ) -> AugmentPreview:
        """The processed dataset's first `count` train rows beside the variants `spec` makes of
        them (as the job will make them; an LLM method's endpoint is asked), with the rows,
        tokens, time and cost of the job (an endpoint's tokens at `price_per_1k_tokens`)."""
        shown = self._call(
            "POST",
            f"/datasets/{dataset_id}/augment/preview",
            params={"count": count, "price_per_1k_tokens": price_per_1k_tokens},
            json=body(spec),
            timeout=self._work_timeout,
        )
        return AugmentPreview.model_validate(shown)

    def augment_dataset(self, dataset_id: str, spec: dict[str, Any] | AugmentSpec) -> DatasetPublic:
        """Start making an augmented dataset from a processed one, e.g. `{"methods": [{"name":
        "swap", "rate": 0.1}], "copies": 2}`: its train rows and their variants (with
        `augmented_from` and `augmentation`), its test split unchanged. In a job: the dataset
        comes back `processing`, and `wait_dataset` waits for it."""
        made = self._call("POST", f"/datasets/{dataset_id}/augment", json=body(spec))
        return DatasetPublic.model_validate(made)

    def wait_dataset(self, dataset_id: str, timeout: float | None = None) -> DatasetPublic:
        """The dataset once no job is importing or processing it any more (at once if none is):
        `ready` or `failed`. Follows the job's events like `wait`, and raises `TimeoutError`
        after `timeout` seconds."""
        dataset = self.get_dataset(dataset_id)
        if dataset.status == "processing" and dataset.job_id:
            self.wait(dataset.job_id, timeout)
            dataset = self.get_dataset(dataset_id)
        return dataset

    def dataset_report(self, dataset_id: str) -> ValidationReport:
        """A processed dataset's validation report: rows in and out, and every problem found."""
        return ValidationReport.model_validate(self._call("GET", f"/datasets/{dataset_id}/report"))

    def dataset_stats(self, dataset_id: str) -> dict[str, Any]:
        """A processed dataset's statistics (rows per split, token lengths, ...)."""
        stats: dict[str, Any] = self._call("GET", f"/datasets/{dataset_id}/stats")
        return stats
