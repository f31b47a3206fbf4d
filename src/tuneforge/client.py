"""A Python client for the TuneForge REST API.

    from tuneforge.client import Client

    with Client.login("http://127.0.0.1:7860", "ada", "a long password") as tf:
        job = tf.create_job("diagnostic", {"seconds": 2})
        for event in tf.events(job.id):
            print(event["type"], event["data"])
        print(tf.wait(job.id).status)

Failures the server reports raise `ApiError`; a server that cannot be reached raises the
underlying `httpx.TransportError`. The client speaks HTTP only: it never imports the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import httpx

from tuneforge import __version__
from tuneforge.schemas.jobs import JobEventPublic, JobList, JobPublic

API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:7860"
END_EVENT = "end"


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
