"""A Python client for the TuneForge REST API.

    from tuneforge.client import Client

    with Client.login("http://127.0.0.1:7860", "ada", "a long password") as tf:
        job = tf.create_job("diagnostic", {"seconds": 2})
        for event in tf.events(job.id):
            print(event["type"], event["data"])
        print(tf.wait(job.id).status)

        raw = tf.upload_dataset("qa.csv")           # recognised, with a proposed mapping
        # or: raw = tf.wait_dataset(tf.import_dataset("tatsu-lab/alpaca").id)
        processed = tf.process_dataset(raw.id, {"mapping": raw.mapping})
        processed = tf.wait_dataset(processed.id)   # large data is processed in a job
        print(tf.dataset_report(processed.id).rows_out)

        spec = {"base_model": "gemma-3-270m", "dataset_id": processed.id, "max_steps": 100}
        print(tf.estimate(spec).estimate.duration_seconds)   # before launching
        run = tf.wait(tf.train(spec).id)                      # live: tf.events(run.id)
        print(tf.metrics(run.id).series["loss"][-1], run.result["model_id"])

Failures the server reports raise `ApiError`; a server that cannot be reached raises the
underlying `httpx.TransportError`. The client speaks HTTP only: it never imports the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel

from tuneforge import __version__
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.mapping import MappingSpec
from tuneforge.data.validation import ValidationReport
from tuneforge.schemas.datasets import DatasetList, DatasetPublic, RowsPage
from tuneforge.schemas.evaluations import EvaluationPublic, SamplesPage
from tuneforge.schemas.jobs import JobEventPublic, JobList, JobPublic
from tuneforge.schemas.models import ModelList, ModelPublic
from tuneforge.schemas.trainings import Comparison, EstimatePublic, RunMetrics

API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:7860"
END_EVENT = "end"
# Uploads and synchronous processing (up to 20,000 rows, tokenized) answer only when done.
WORK_TIMEOUT = 600.0


class ApiError(Exception):
    """The server refused or failed a request; `str(err)` is its message."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Parse the server's `{"error": {"code", "message", "details"}}` shape."""
        try:
            error = response.json()["error"]
            return cls(
                response.status_code,
                str(error["code"]),
                str(error["message"]),
                error.get("details") or {},
            )
        except (ValueError, KeyError, TypeError):
            text = response.text.strip()[:200] or response.reason_phrase
            return cls(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")


class Client:
    """One connection pool to one server, authenticated by an API token (or not, in `none` mode)."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._work_timeout = httpx.Timeout(timeout, read=max(timeout, WORK_TIMEOUT))
        headers = {"User-Agent": f"tuneforge-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def login(
        cls,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> Client:
        """Trade a user name and password for a new API token, and use it."""
        client = cls(base_url, timeout=timeout, transport=transport)
        try:
            created = client._call(
                "POST", "/auth/login", json={"username": username, "password": password}
            )
        except BaseException:
            client.close()
            raise
        client._http.headers["Authorization"] = f"Bearer {created['token']}"
        return client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; the decoded JSON body, None for an empty one, or `ApiError`."""
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise ApiError.from_response(response)
        return response.json() if response.content else None

    # -- server and account --------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The server's health report; `status` is `ok` or `degraded` (which is not an error)."""
        response = self._http.get("/health")
        if response.status_code not in (200, 503):
            raise ApiError.from_response(response)
        report: dict[str, Any] = response.json()
        return report

    def me(self) -> dict[str, Any]:
        user: dict[str, Any] = self._call("GET", "/me")
        return user

    def create_token(self, name: str) -> dict[str, Any]:
        """A new API token; its secret (`token`) is returned only this once."""
        token: dict[str, Any] = self._call("POST", "/tokens", json={"name": name})
        return token

    def list_tokens(self) -> list[dict[str, Any]]:
        tokens: list[dict[str, Any]] = self._call("GET", "/tokens")
        return tokens

    def revoke_token(self, token_id: str) -> None:
        self._call("DELETE", f"/tokens/{token_id}")

    # -- jobs ------------------------------------------------------------------------------------
    def create_job(self, kind: str, spec: dict[str, Any] | None = None) -> JobPublic:
        body: dict[str, Any] = {"kind": kind} if spec is None else {"kind": kind, "spec": spec}
        return JobPublic.model_validate(self._call("POST", "/jobs", json=body))

    def list_jobs(
        self, status: str | None = None, kind: str | None = None, offset: int = 0, limit: int = 50
    ) -> JobList:
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status is not None:
            params["status"] = status
        if kind is not None:
            params["kind"] = kind
        return JobList.model_validate(self._call("GET", "/jobs", params=params))

    def get_job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._call("GET", f"/jobs/{job_id}"))

    def cancel_job(self, job_id: str) -> JobPublic:
        """Cancel a queued job at once, or ask a running one to stop (`cancelling`)."""
        return JobPublic.model_validate(self._call("POST", f"/jobs/{job_id}/cancel"))

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job with its events and artifacts."""
        self._call("DELETE", f"/jobs/{job_id}")

    def events(
        self, job_id: str, after: int = 0, follow: bool = True, *, max_reconnects: int = 5
    ) -> Iterator[dict[str, Any]]:
        """The job's events after event id `after`, oldest first, ending with an `end` event.

        Each event is a dict with `id`, `job_id`, `type` (`status`, `progress`, `metric`, `log`,
        `artifact` or `end`), `data` and `created_at` (`id` and `created_at` are None for `end`).
        With `follow`, the stream lasts until the job has finished; otherwise it ends after the
        events reported so far. A dropped connection is resumed where it broke off, up to
        `max_reconnects` times in a row.
        """
        for event in self._stream(job_id, after, follow, max_reconnects):
            if event is not None:
                yield event

    def wait(self, job_id: str, timeout: float | None = None) -> JobPublic:
        """Follow the job's events until it has finished and return it; `TimeoutError` if it
        takes longer than `timeout` seconds (checked at every event and keep-alive, >= every 15 s).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._stream(job_id, 0, True, 5):
            ended = event is not None and event["type"] == END_EVENT
            if deadline is not None and not ended and time.monotonic() > deadline:
                raise TimeoutError(f"Job {job_id} did not finish within {timeout:g} s.")
        return self.get_job(job_id)  # the stream ends only after the job has finished

    def _stream(
        self, job_id: str, after: int, follow: bool, max_reconnects: int
    ) -> Iterator[dict[str, Any] | None]:
        """Events as dicts, and None at each keep-alive; a stream that breaks off before its
        `end` event is resumed from the last event seen (`Last-Event-ID`)."""
        last_id = after
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last_id)} if last_id else {}
            try:
                with self._http.stream(
                    "GET",
                    f"/jobs/{job_id}/events",
                    headers=headers,
                    params={"after": after, "follow": follow},
                ) as response:
                    if response.is_error:
                        response.read()
                        raise ApiError.from_response(response)
                    for message in _parse_sse(response.iter_lines()):
                        if message is None:
                            yield None
                            continue
                        event = _decode(*message)
                        failures = 0
                        if event["type"] == END_EVENT:
                            yield event
                            return
                        last_id = event["id"]
                        yield event
                problem: Exception = ApiError(
                    0, "stream_ended", f"The event stream of job {job_id} ended before the job."
                )
            except (httpx.TransportError, httpx.StreamError) as exc:
                problem = exc
            failures += 1
            if failures > max_reconnects:
                raise problem
            time.sleep(min(0.2 * 2**failures, 5.0))

    # -- datasets --------------------------------------------------------------------------------
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
        options = {"subset": subset, "split": split, "revision": revision, "name": name}
        body = {"source": source, "path": path} | {
            key: value for key, value in options.items() if value is not None
        }
        return DatasetPublic.model_validate(self._call("POST", "/datasets/import", json=body))

    def list_datasets(
        self, kind: str | None = None, offset: int = 0, limit: int = 50
    ) -> DatasetList:
        """Your datasets, newest first; `kind` is `raw` or `processed` (default: both)."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if kind is not None:
            params["kind"] = kind
        return DatasetList.model_validate(self._call("GET", "/datasets", params=params))

    def get_dataset(self, dataset_id: str) -> DatasetPublic:
        return DatasetPublic.model_validate(self._call("GET", f"/datasets/{dataset_id}"))

    def delete_dataset(self, dataset_id: str) -> None:
        self._call("DELETE", f"/datasets/{dataset_id}")

    def dataset_rows(
        self, dataset_id: str, split: str | None = None, offset: int = 0, limit: int = 20
    ) -> RowsPage:
        """A page of rows of one split (default: the first), long values shortened."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if split is not None:
            params["split"] = split
        return RowsPage.model_validate(
            self._call("GET", f"/datasets/{dataset_id}/rows", params=params)
        )

    def preview_mapping(
        self, dataset_id: str, mapping: dict[str, Any] | MappingSpec
    ) -> list[dict[str, Any]]:
        """The raw dataset's first rows mapped: each a dict with `row`, `rendered` (the text in
        Gemma's chat format, or None) and `problems` (what is wrong with the row)."""
        examples: list[dict[str, Any]] = self._call(
            "POST", f"/datasets/{dataset_id}/preview", json=_body(mapping)
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
            json=_body(config),
            timeout=self._work_timeout,
        )
        return DatasetPublic.model_validate(processed)

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

    # -- training ----------------------------------------------------------------------------------
    def train(self, spec: dict[str, Any] | BaseModel) -> JobPublic:
        """Launch a training run (a `train` job); refused with a message saying what to change
        when it cannot fit this machine."""
        return self.create_job("train", _body(spec))

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
            self._call("POST", "/trainings/estimate", json=_body(spec))
        )

    def recommendations(self, dataset_id: str, base_model: str) -> list[dict[str, Any]]:
        """Suggested settings for a dataset and model, each with its reason."""
        params = {"dataset_id": dataset_id, "base_model": base_model}
        found: list[dict[str, Any]] = self._call("GET", "/trainings/recommendations", params=params)
        return found

    def catalog(self) -> list[dict[str, Any]]:
        """The models that can be fine-tuned."""
        entries: list[dict[str, Any]] = self._call("GET", "/catalog")
        return entries

    def presets(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/trainings/presets")
        return found

    def preset(self, preset_id: str) -> dict[str, Any]:
        """A preset's settings (a spec without `dataset_id`)."""
        values: dict[str, Any] = self._call("GET", f"/trainings/presets/{preset_id}")
        return values

    # -- models ------------------------------------------------------------------------------------
    def list_models(self, offset: int = 0, limit: int = 50) -> ModelList:
        params = {"offset": offset, "limit": limit}
        return ModelList.model_validate(self._call("GET", "/models", params=params))

    def get_model(self, model_id: str) -> ModelPublic:
        return ModelPublic.model_validate(self._call("GET", f"/models/{model_id}"))

    def delete_model(self, model_id: str) -> None:
        self._call("DELETE", f"/models/{model_id}")

    # -- chat ----------------------------------------------------------------------------------
    def chat_models(self) -> list[dict[str, Any]]:
        """Models to chat with: your fine-tuned models, then the catalog's base models."""
        items: list[dict[str, Any]] = self._call("GET", "/chat/models")["items"]
        return items

    def chat(self, model: str, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
        """One whole answer: `{model, message, finish_reason, usage, engine}`. `params` are
        the chat request's other fields (`system`, `temperature`, `max_new_tokens`, ...)."""
        body = {"model": model, "messages": messages, **params, "stream": False}
        answer: dict[str, Any] = self._call("POST", "/chat", json=body, timeout=self._work_timeout)
        return answer

    def chat_stream(
        self, model: str, messages: list[dict[str, str]], **params: Any
    ) -> Iterator[dict[str, Any]]:
        """The answer as it is generated: `{"type": "delta", "text"}` events, then one
        `{"type": "done", ...}` with the finish reason and token counts."""
        body = {"model": model, "messages": messages, **params, "stream": True}
        with self._http.stream("POST", "/chat", json=body, timeout=self._work_timeout) as response:
            if response.is_error:
                response.read()
                raise ApiError.from_response(response)
            for message in _parse_sse(response.iter_lines()):
                if message is None:
                    continue
                _, event_type, data = message
                payload = json.loads(data)
                if event_type == "error":
                    raise ApiError(200, payload["code"], payload["message"])
                yield {"type": event_type, **payload}

    # -- evaluations -------------------------------------------------------------------------------
    def evaluate(self, spec: dict[str, Any] | BaseModel) -> JobPublic:
        """Launch an evaluation (an `evaluate` job; see `EvaluationSpec`): `wait` for it, then
        read `evaluation`. Refused at once when the dataset or a model is not yours."""
        return self.create_job("evaluate", _body(spec))

    def evaluation(self, job_id: str) -> EvaluationPublic:
        """A finished evaluation's metrics per model, their difference B - A and the details
        (`ApiError` 409 while it runs)."""
        return EvaluationPublic.model_validate(self._call("GET", f"/evaluations/{job_id}"))

    def evaluation_samples(
        self, job_id: str, offset: int = 0, limit: int = 50, filter: str | None = None
    ) -> SamplesPage:
        """A page of the samples with their reference, answers and scores; `filter` keeps only
        `a_right_b_wrong`, `a_wrong_b_right`, `both_right`, `both_wrong`, `a_right` or
        `a_wrong` ones."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if filter is not None:
            params["filter"] = filter
        return SamplesPage.model_validate(
            self._call("GET", f"/evaluations/{job_id}/samples", params=params)
        )

    def download_evaluation(
        self, job_id: str, fmt: Literal["csv", "jsonl"], path: str | Path
    ) -> Path:
        """Save every sample of an evaluation as CSV or JSON Lines at `path` (streamed)."""
        return self._save(f"/evaluations/{job_id}/samples.{fmt}", Path(path))

    def _save(
        self, url: str, path: Path, params: dict[str, str] | None = None, *, resume: bool = False
    ) -> Path:
        """Stream `url` into `path`; with `resume`, continue a partial file (HTTP Range)."""
        have = path.stat().st_size if resume and path.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._http.stream(
            "GET", url, params=params, headers=headers, timeout=self._work_timeout
        ) as response:
            if response.status_code == 416 and have:  # the file is already whole
                return path
            if response.is_error:
                response.read()
                raise ApiError.from_response(response)
            with path.open("ab" if response.status_code == 206 else "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return path

    # -- exports ---------------------------------------------------------------------------------
    def export_choices(self, model_id: str) -> dict[str, Any]:
        """Every format and quantisation `model_id` can be exported as, with estimated sizes."""
        choices: dict[str, Any] = self._call("GET", f"/models/{model_id}/export-choices")
        return choices

    def export(
        self,
        model_id: str,
        format: str,
        quantization: str | None = None,
        destination: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Export a model (`adapter`, `merged`, `gguf`, `ollama`) to a destination (default: a
        download kept on the server); an identical existing download comes back `reused`."""
        body: dict[str, Any] = {"format": format, "quantization": quantization}
        if destination is not None:
            body["destination"] = destination
        created: dict[str, Any] = self._call("POST", f"/models/{model_id}/exports", json=body)
        return created

    def list_exports(self, model_id: str) -> list[dict[str, Any]]:
        exports: list[dict[str, Any]] = self._call("GET", f"/models/{model_id}/exports")["items"]
        return exports

    def get_export(self, export_id: str) -> dict[str, Any]:
        export: dict[str, Any] = self._call("GET", f"/exports/{export_id}")
        return export

    def wait_export(self, export_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The export once it has ended (succeeded, failed or cancelled)."""
        export = self.get_export(export_id)
        if export["status"] in ("queued", "running") and export["job_id"]:
            self.wait(export["job_id"], timeout)
            export = self.get_export(export_id)
        return export

    def delete_export(self, export_id: str) -> None:
        self._call("DELETE", f"/exports/{export_id}")

    def download_export(
        self, export_id: str, path: str | Path, file: str | None = None, *, resume: bool = True
    ) -> Path:
        """Save one file of an export (`file`) or all of them as a ZIP at `path`; a partial
        `path` from an interrupted download is continued (`resume`)."""
        params = {"file": file} if file else None
        return self._save(f"/exports/{export_id}/download", Path(path), params, resume=resume)

    # -- secrets ---------------------------------------------------------------------------------
    def set_secret(self, name: str, value: str) -> None:
        """Create or replace your secret `name` (`HF_TOKEN`, `WANDB_API_KEY`, ...); the server
        stores it encrypted and never returns it."""
        self._call("PUT", f"/secrets/{name}", json={"value": value})

    def list_secrets(self) -> list[dict[str, Any]]:
        """Your secrets' `name`, `created_at` and `updated_at` (never their values)."""
        secrets: list[dict[str, Any]] = self._call("GET", "/secrets")
        return secrets

    def delete_secret(self, name: str) -> None:
        self._call("DELETE", f"/secrets/{name}")


def _body(value: dict[str, Any] | BaseModel) -> dict[str, Any]:
    """A request body from a dict (sent as it is; the server validates it) or a model."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _parse_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str] | None]:
    """Server-Sent Events as `(id, event, data)`, and None for each comment (keep-alive)."""
    event_id: str | None = None
    event_type = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event_id, event_type, "\n".join(data)
            event_id, event_type, data = None, "message", []
        elif line.startswith(":"):
            yield None
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "event":
                event_type = value
            elif field == "data":
                data.append(value)


def _decode(event_id: str | None, event_type: str, data: str) -> dict[str, Any]:
    """A job event (validated as `JobEventPublic`) or the final `end` event, as a dict."""
    payload = json.loads(data)
    if event_type == END_EVENT:
        return {
            "id": None,
            "job_id": payload.get("job_id"),
            "type": END_EVENT,
            "data": payload,
            "created_at": None,
        }
    event = JobEventPublic.model_validate(payload).model_dump()
    if event_id is not None:
        event["id"] = int(event_id)
    return event
