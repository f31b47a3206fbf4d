"""The connection every part of the client shares: one connection pool to one server and its
token, the `ApiError` that the server's refusals raise, and the few ways of talking to it (a
JSON request, a streamed download, a stream of Server-Sent Events)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import BaseModel

from tuneforge import __version__

API_PREFIX = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:7860"
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


def raise_for_error(response: httpx.Response) -> None:
    """Raise the server's `ApiError` if `response` is one (reading a streamed body first)."""
    if response.is_error:
        response.read()
        raise ApiError.from_response(response)


class BaseClient:
    """One connection pool to one server, authenticated by an API token (or not, in `none` mode);
    each resource's part of `Client` builds on it."""

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
    ) -> Self:
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
        raise_for_error(response)
        return response.json() if response.content else None

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
            raise_for_error(response)
            with path.open("ab" if response.status_code == 206 else "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return path


def body(value: dict[str, Any] | BaseModel) -> dict[str, Any]:
    """A request body from a dict (sent as it is; the server validates it) or a model."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def given(**values: Any) -> dict[str, Any]:
    """The optional request fields that were given (not None)."""
    return {key: value for key, value in values.items() if value is not None}


def page_query(offset: int, limit: int, **filters: Any) -> dict[str, Any]:
    """The query of one page of a list: its `offset` and `limit`, and the filters given."""
    return {"offset": offset, "limit": limit} | given(**filters)


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str | None, str, str] | None]:
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
