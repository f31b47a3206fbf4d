"""Bounding a Hugging Face download: the size the Hub's metadata gives before anything is
downloaded, and a byte cap on what huggingface_hub's HTTP client receives while it downloads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import PurePosixPath

import httpx2

from tuneforge.data.config import DatasetImport
from tuneforge.data.limits import size_text

#: The files `datasets` loads data from (the others, such as README.md, are small).
DATA_SUFFIXES = (
    *(".parquet", ".arrow", ".json", ".jsonl", ".csv", ".tsv", ".txt"),
    *(".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".tar"),
)


class DownloadTooLarge(Exception):
    """A download went past its byte cap."""


def hub_size(request: DatasetImport) -> int | None:
    """Bytes of the data files that loading `request` downloads, from the Hub's metadata (the
    subset's folder when it has one); None when the Hub does not tell every file's size."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi().dataset_info(request.path, revision=request.revision, files_metadata=True)
    except (HfHubHTTPError, httpx2.HTTPError):
        return None  # missing, private or unreachable: the load says so in its own words
    files = [s for s in info.siblings or [] if s.rfilename.lower().endswith(DATA_SUFFIXES)]
    if request.subset:
        files = [
            s for s in files if request.subset in PurePosixPath(s.rfilename).parts[:-1]
        ] or files
    sizes = [s.size for s in files]
    return None if any(size is None for size in sizes) else sum(s or 0 for s in sizes)


def _advice(limit: int) -> str:
    return (
        f"the {size_text(limit)} this import may download (the server's cap on a Hugging Face "
        "import, or what your storage quota had left when it started, beside your other "
        "imports in progress). Choose a subset or a split, delete datasets or models you no "
        "longer need, wait for your other imports to end, or ask an administrator for more."
    )


def too_large(what: str, size: int, limit: int) -> str:
    return f"{what} takes {size_text(size)}, more than {_advice(limit)}"


class _Counted(httpx2.SyncByteStream):
    """A response body that counts its bytes against the cap as they arrive."""

    def __init__(self, stream: httpx2.SyncByteStream, cap: DownloadCap) -> None:
        self._stream = stream
        self._cap = cap

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self._cap.take(len(chunk))
            yield chunk

    def close(self) -> None:
        self._stream.close()


class DownloadCap:
    """At most `limit` bytes received by huggingface_hub's HTTP client in this process while
    active (`with cap:`); past it every further read raises `DownloadTooLarge`, and `exceeded`
    tells why a library that wraps errors failed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.exceeded: str | None = None
        self._lock = threading.Lock()

    def take(self, count: int) -> None:
        with self._lock:
            self.received += count
            if self.received > self.limit:
                self.exceeded = (
                    f"Downloading this dataset was stopped after {size_text(self.received)}, "
                    f"past {_advice(self.limit)}"
                )
                raise DownloadTooLarge(self.exceeded)

    def _on_response(self, response: httpx2.Response) -> None:
        announced = response.headers.get("content-length")
        if announced and announced.isdigit() and self.received + int(announced) > self.limit:
            self.exceeded = too_large("One of the dataset's files", int(announced), self.limit)
            response.close()
            raise DownloadTooLarge(self.exceeded)
        assert isinstance(response.stream, httpx2.SyncByteStream)  # huggingface_hub's client
        response.stream = _Counted(response.stream, self)

    def _client(self) -> httpx2.Client:
        from huggingface_hub.utils._http import default_client_factory

        client = default_client_factory()
        hooks = client.event_hooks
        client.event_hooks = {**hooks, "response": [*hooks["response"], self._on_response]}
        return client

    @contextlib.contextmanager
    def active(self) -> Iterator[DownloadCap]:
        """huggingface_hub's downloads go through a counting client (and not through Xet,
        which would bypass it) until the block ends."""
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.utils._http import default_client_factory

        xet = constants.HF_HUB_DISABLE_XET
        constants.HF_HUB_DISABLE_XET = True
        huggingface_hub.set_client_factory(self._client)
        try:
            yield self
        finally:
            huggingface_hub.set_client_factory(default_client_factory)
            constants.HF_HUB_DISABLE_XET = xet
