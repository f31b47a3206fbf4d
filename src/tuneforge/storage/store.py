"""ArtifactStore: atomic artifact files over fsspec (local directory, S3 or GCS)."""

from __future__ import annotations

import builtins
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, cast

from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

CHUNK_SIZE = 1024 * 1024
COMPLETE_MARKER = "_COMPLETE"
_LOCAL_PROTOCOLS = {None, "file", "local"}
_OBJECT_PROTOCOLS = {"s3", "s3a", "gs", "gcs"}
_TEMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")
# "*?[" would make fsspec glob in rm/expand_path; the rest escape the store root.
_FORBIDDEN_CHARS = ("\\", "\x00", "*", "?", "[")


class StorageError(Exception):
    """An artifact store operation failed."""


class InvalidKeyError(StorageError, ValueError):
    """A key is empty, absolute, escapes the root or contains forbidden characters."""


class ArtifactNotFound(StorageError, FileNotFoundError):
    """No (complete) artifact is stored under the key."""


class TooLargeError(StorageError):
    """A stream exceeded its max_bytes limit; nothing was stored."""


def _check_key(key: str) -> str:
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(c in key for c in _FORBIDDEN_CHARS)
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise InvalidKeyError(f"invalid artifact key: {key!r}")
    return key


def artifact_prefix(owner_id: str, kind: str, item_id: str) -> str:
    """Return the key prefix ``{owner_id}/{kind}/{item_id}`` after validating each part."""
    for part in (owner_id, kind, item_id):
        if "/" in part:
            raise InvalidKeyError(f"invalid artifact key part: {part!r}")
        _check_key(part)
    return f"{owner_id}/{kind}/{item_id}"


def _read_chunks(chunks: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    if hasattr(chunks, "read"):
        source = cast(BinaryIO, chunks)
        return iter(lambda: source.read(CHUNK_SIZE), b"")
    return iter(chunks)


class ArtifactStore:
    """Artifact files under a root URL: ``file:///abs/dir``, ``s3://bucket/prefix``, ``gs://...``.

    Keys are relative POSIX paths such as ``{owner}/{kind}/{id}/{name}``. A key is visible only
    once its content is completely written.
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        protocol = split_protocol(url)[0]
        if protocol not in _LOCAL_PROTOCOLS | _OBJECT_PROTOCOLS:
            raise StorageError(f"unsupported storage URL {url!r}: use file://, s3:// or gs://")
        opts = dict(options or {})
        if protocol in _OBJECT_PROTOCOLS:
            # Workers in other processes write to the same bucket: never trust cached listings.
            opts.setdefault("use_listings_cache", False)
        try:
            fs, root = url_to_fs(url, **opts)
        except ImportError as exc:
            raise StorageError(
                f"{protocol}:// storage needs an optional package ({exc}); "
                "install it with: pip install 'tuneforge[cloud]'"
            ) from exc
        self.url = url
        self._fs: Any = fs
        self._root = cast(str, root).rstrip("/")
        self._local = isinstance(fs, LocalFileSystem)
        if self._local:
            fs.makedirs(self._root, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    def _path(self, key: str) -> str:
        return f"{self._root}/{_check_key(key)}"

    @contextmanager
    def _atomic_writer(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        if not self._local:
            # Object stores: a PUT or completed multipart upload is atomic, so write directly.
            # autocommit=False publishes only on commit(); discard() aborts the upload.
            f = self._fs.open(path, "wb", autocommit=False)
            try:
                yield f
                f.close()
                f.commit()
            except BaseException:
                f.discard()
                f.closed = True  # keep __del__ from flushing the discarded buffer
                raise
            return
        parent, name = path.rsplit("/", 1)
        self._fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
        try:
            with self._fs.open(tmp, "wb") as f:
                yield f
            os.replace(tmp, path)  # atomic rename; unlike shutil.move, never nests into a dir
        except BaseException:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        self.write_stream(key, [data])

    def write_stream(
        self, key: str, chunks: Iterable[bytes] | BinaryIO, *, max_bytes: int | None = None
    ) -> int:
        """Store an iterable of chunks or a binary file atomically; return the bytes written.

        Raises TooLargeError (and stores nothing) once more than ``max_bytes`` arrive.
        """
        total = 0
        with self._atomic_writer(key) as f:
            for chunk in _read_chunks(chunks):
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise TooLargeError(f"{key!r} exceeds the limit of {max_bytes} bytes")
                f.write(chunk)
        return total

    def put_file(self, key: str, local_path: str | Path) -> None:
        """Upload a local file to ``key`` atomically."""
        with builtins.open(local_path, "rb") as src:
            self.write_stream(key, src)

    def put_dir(
        self,
        prefix: str,
        local_dir: str | Path,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        """Upload a directory tree under ``prefix``, then write the ``_COMPLETE`` marker last;
        ``progress(done, total, name)`` is told before each file."""
        marker = f"{_check_key(prefix)}/{COMPLETE_MARKER}"
        root = Path(local_dir)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        rels = [p.relative_to(root).as_posix() for p in files]
        if COMPLETE_MARKER in rels:
            raise StorageError(f"{root} contains the reserved name {COMPLETE_MARKER!r}")
        self.delete(marker)  # a re-upload is incomplete until its own marker lands
        for done, (path, rel) in enumerate(zip(files, rels, strict=True)):
            if progress is not None:
                progress(done, len(files), rel)
            self.put_file(f"{prefix}/{rel}", path)
        self.write_bytes(marker, b"")

    def is_complete(self, prefix: str) -> bool:
        """Whether ``put_dir`` finished uploading ``prefix``."""
        return self.exists(f"{_check_key(prefix)}/{COMPLETE_MARKER}")

    def get_dir(self, prefix: str, local_dir: str | Path) -> None:
        """Download a complete ``put_dir`` tree into ``local_dir`` (without the marker)."""
        if not self.is_complete(prefix):
            raise ArtifactNotFound(f"no complete artifact under {prefix!r}")
        dest_root = Path(local_dir)
        for key in self.list(prefix):
            rel = key[len(prefix) + 1 :]
            if rel == COMPLETE_MARKER:
                continue
            src = self._path(key)  # validates: no ".." from foreign objects
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._fs.get_file(src, str(dest))

    def read_bytes(self, key: str) -> bytes:
        """Return the content stored under ``key``."""
        path = self._path(key)
        try:
            return bytes(self._fs.cat_file(path))
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ArtifactNotFound(f"artifact not found: {key!r}") from exc

    def open(self, key: str) -> BinaryIO:
        """Open ``key`` for streaming reads; close the returned file when done."""
        path = self._path(key)
        try:
            return cast(BinaryIO, self._fs.open(path, "rb"))
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ArtifactNotFound(f"artifact not found: {key!r}") from exc

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the content of ``key`` in chunks of at most ``chunk_size`` bytes."""
        with self.open(key) as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key`` (a prefix alone does not count)."""
        return bool(self._fs.isfile(self._path(key)))

    def size(self, key: str) -> int:
        """Size in bytes of the file stored under ``key``."""
        try:
            info = self._fs.info(self._path(key))
        except FileNotFoundError as exc:
            raise ArtifactNotFound(f"artifact not found: {key!r}") from exc
        if info["type"] != "file":
            raise ArtifactNotFound(f"artifact not found: {key!r}")
        return int(info["size"])

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Keys under ``prefix`` (recursive, sorted, relative to the root), without temp files."""
        base = self._path(prefix) if prefix else self._root
        start = len(self._root) + 1
        keys = (cast(str, p)[start:] for p in self._fs.find(base))
        return sorted(k for k in keys if not _TEMP_NAME.match(k.rsplit("/", 1)[-1]))

    def delete(self, key_or_prefix: str) -> None:
        """Delete a file or a whole prefix recursively; a missing key is not an error."""
        path = self._path(key_or_prefix)
        with suppress(FileNotFoundError):
            self._fs.rm(path, recursive=True)

    def check(self) -> str | None:
        """Write, read and delete a probe under ``.health/``; None if ok, else the reason."""
        key = f".health/probe-{uuid.uuid4().hex}"
        payload = uuid.uuid4().bytes
        try:
            self.write_bytes(key, payload)
            try:
                if self.read_bytes(key) != payload:
                    return f"{self.url}: read back different bytes than written"
            finally:
                self.delete(key)
        except Exception as exc:
            return f"{self.url}: {type(exc).__name__}: {exc}"
        return None
