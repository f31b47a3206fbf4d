"""Jobs through the client: create, list, cancel and delete them, and follow their events
(Server-Sent Events, resumed where a dropped connection broke off) until they finish."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from tuneforge.client.base import ApiError, BaseClient, page_query, parse_sse, raise_for_error
from tuneforge.schemas.jobs import JobEventPublic, JobList, JobPublic

END_EVENT = "end"


class JobsClient(BaseClient):
    """The client's job methods; the resources that run as jobs build on them."""

    def create_job(self, kind: str, spec: dict[str, Any] | None = None) -> JobPublic:
        body: dict[str, Any] = {"kind": kind} if spec is None else {"kind": kind, "spec": spec}
        return JobPublic.model_validate(self._call("POST", "/jobs", json=body))

    def list_jobs(
        self, status: str | None = None, kind: str | None = None, offset: int = 0, limit: int = 50
    ) -> JobList:
        params = page_query(offset, limit, status=status, kind=kind)
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
                    raise_for_error(response)
                    for message in parse_sse(response.iter_lines()):
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
