"""Where an export's files go: kept for download, a server directory, S3, GCS or the Hugging
Face Hub. `deliver` copies a local directory there, then lists the destination back: a delivery
that returns has every file in place at its full size.

Cheap to import (the web process validates destinations): the clients load inside `deliver`.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

if TYPE_CHECKING:
    from huggingface_hub import HfApi

HUB_ENDPOINT = "https://huggingface.co"
CHUNK_SIZE = 1024 * 1024
PART_SIZE = 50 * CHUNK_SIZE  # multipart upload parts (as s3fs), larger for files over 10,000
_MAX_PARTS = 10_000  # parts in one S3 multipart upload
# The rule of `tuneforge.services.secrets.NAME`, repeated so this module stays import-light.
_SECRET_NAME = r"^[A-Z][A-Z0-9_]{0,63}$"  # noqa: S105  (a pattern, not a password)
_BUCKET_URL = re.compile(r"(?P<scheme>[a-z0-9]+)://[a-z0-9][a-z0-9._-]{2,221}(?P<prefix>/.+)?")
_REPO_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")

Progress: TypeAlias = Callable[[int, int], None]
_Report: TypeAlias = Callable[[int], None]  # bytes done so far


class DeliveryError(Exception):
    """The files could not be delivered; the message says why, for the user."""


class _Destination(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _secret_name(default: str, holding: str) -> Any:
    return Field(
        default=default,
        pattern=_SECRET_NAME,
        description=f"The name of your stored secret holding {holding} (not the value itself).",
    )


def _bucket_url(url: str, scheme: str) -> str:
    url = url.rstrip("/")
    match = _BUCKET_URL.fullmatch(url)
    if match is None or match["scheme"] != scheme:
        raise ValueError(f"use {scheme}://bucket or {scheme}://bucket/prefix")
    parts = (match["prefix"] or "").split("/")[1:]
    if any(part in ("", ".", "..") or "\x00" in part for part in parts):
        raise ValueError("the prefix must be a plain path, without empty, '.' or '..' parts")
    return url


class DownloadDestination(_Destination):
    kind: Literal["download"] = Field(
        default="download", description="Keep the files on the server, to download."
    )


class DirectoryDestination(_Destination):
    kind: Literal["directory"] = Field(
        default="directory", description="Copy the files into a directory of the server."
    )
    path: str = Field(description="The directory's absolute path; it is created if needed.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if "\x00" in path or not os.path.isabs(path):
            raise ValueError("the directory must be an absolute path")
        return os.path.normpath(path)


class S3Destination(_Destination):
    kind: Literal["s3"] = Field(default="s3", description="Upload the files to an S3 bucket.")
    url: str = Field(description="Where the files go: `s3://bucket` or `s3://bucket/prefix`.")
    endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="For S3-compatible services (MinIO, Cloudflare R2...): their endpoint URL.",
    )
    region: str | None = Field(
        default=None, pattern=r"^[a-z0-9-]{1,64}$", description="The bucket's region, if needed."
    )
    access_key_secret: str = _secret_name("AWS_ACCESS_KEY_ID", "the access key id")
    secret_key_secret: str = _secret_name("AWS_SECRET_ACCESS_KEY", "the secret access key")

    @field_validator("url")
    @classmethod
    def _s3_url(cls, url: str) -> str:
        return _bucket_url(url, "s3")


class GcsDestination(_Destination):
    kind: Literal["gcs"] = Field(
        default="gcs", description="Upload the files to a Google Cloud Storage bucket."
    )
    url: str = Field(description="Where the files go: `gs://bucket` or `gs://bucket/prefix`.")
    credentials_secret: str = _secret_name("GCS_CREDENTIALS", "a service account's JSON key")

    @field_validator("url")
    @classmethod
    def _gs_url(cls, url: str) -> str:
        return _bucket_url(url, "gs")


class HubDestination(_Destination):
    kind: Literal["hub"] = Field(
        default="hub", description="Upload the files to a Hugging Face Hub model repository."
    )
    repo_id: str = Field(description="The repository, `user/name` or `organization/name`.")
    private: StrictBool = Field(
        default=True,
        description="Create the repository private. An existing public repository is refused "
        "unless this is false.",
    )
    token_secret: str = _secret_name("HF_TOKEN", "a Hugging Face token with write access")

    @field_validator("repo_id")
    @classmethod
    def _hub_rules(cls, repo_id: str) -> str:
        if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
            raise ValueError(
                "use `user/name`: letters, digits, '-', '_' and '.', at most 96 of them on each "
                "side, not starting or ending with '-' or '.', without '--' or '..'"
            )
        if repo_id.endswith(".git"):
            raise ValueError("a repository name cannot end in .git")
        return repo_id


AnyDestination: TypeAlias = (
    DownloadDestination | DirectoryDestination | S3Destination | GcsDestination | HubDestination
)
Destination: TypeAlias = Annotated[AnyDestination, Field(discriminator="kind")]


@dataclass(frozen=True)
class Delivery:
    """Where the files went, and their names (relative POSIX paths, sorted)."""

    location: str
    files: list[str]


def required_secrets(dest: AnyDestination) -> list[str]:
    """The names of the user's secrets that delivering to `dest` reads."""
    if isinstance(dest, S3Destination):
        return [dest.access_key_secret, dest.secret_key_secret]
    if isinstance(dest, GcsDestination):
        return [dest.credentials_secret]
    if isinstance(dest, HubDestination):
        return [dest.token_secret]
    return []


def describe(dest: AnyDestination) -> str:
    """A short label for people: "download", the directory, the bucket URL or the Hub repo."""
    if isinstance(dest, DirectoryDestination):
        return dest.path
    if isinstance(dest, S3Destination | GcsDestination):
        return dest.url
    if isinstance(dest, HubDestination):
        return f"Hugging Face Hub: {dest.repo_id} ({'private' if dest.private else 'public'})"
    return "download"


def deliver(
    dest: AnyDestination,
    source: Path,
    secrets: Mapping[str, str],
    *,
    hub_endpoint: str = HUB_ENDPOINT,
    progress: Progress | None = None,
) -> Delivery:
    """Copy every file under the directory `source` to `dest`, then list `dest` back and raise
    DeliveryError unless each file is there at its size. `progress(bytes_done, bytes_total)`
    follows the copy (per chunk; for the Hub, before and after its single commit)."""
    sizes = _local_files(source)
    if not sizes:
        raise DeliveryError(f"nothing to deliver: {source} holds no files")
    total = sum(sizes.values())

    def report(done: int) -> None:
        if progress is not None:
            progress(done, total)

    location = describe(dest)
    if isinstance(dest, DownloadDestination):
        return Delivery(location, sorted(sizes))
    if isinstance(dest, DirectoryDestination):
        _copy_tree(source, Path(dest.path), sizes, report)
    elif isinstance(dest, HubDestination):
        location = f"{hub_endpoint.rstrip('/')}/{dest.repo_id}"
        _hub_upload(dest, source, sizes, secrets, hub_endpoint, report)
    else:
        _put_tree(dest, source, sizes, secrets, report)
    found = list_files(dest, secrets, hub_endpoint=hub_endpoint)
    bad = [name for name in sorted(sizes) if found.get(name) != sizes[name]]
    if bad:
        problems = [
            f"{n} ({found[n]} bytes, not {sizes[n]})" if n in found else f"{n} (missing)"
            for n in bad[:5]
        ]
        raise DeliveryError(f"{location} does not hold what was sent: {', '.join(problems)}")
    return Delivery(location, sorted(sizes))


def list_files(
    dest: AnyDestination, secrets: Mapping[str, str], *, hub_endpoint: str = HUB_ENDPOINT
) -> dict[str, int]:
    """The files at `dest` (relative path → size in bytes). A download destination holds none
    of its own: its files are the export's, in the artifact store."""
    if isinstance(dest, DownloadDestination):
        return {}
    if isinstance(dest, DirectoryDestination):
        return _local_files(Path(dest.path))
    if isinstance(dest, HubDestination):
        from huggingface_hub import RepoFile

        with _hub(dest, secrets, hub_endpoint) as api:
            tree = api.list_repo_tree(dest.repo_id, recursive=True)
            return {item.path: item.size for item in tree if isinstance(item, RepoFile)}
    fs, root = _object_store(dest, secrets)
    with _failing_as(f"could not list {dest.url}", secrets.values()):
        found = fs.find(root, detail=True)
    return {
        path.removeprefix(f"{root}/"): int(info["size"])
        for path, info in found.items()
        if path.startswith(f"{root}/")
    }


def _local_files(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _secret(secrets: Mapping[str, str], name: str) -> str:
    if not secrets.get(name):
        raise DeliveryError(f"the secret {name} is not set: add it to your secrets")
    return secrets[name]


def _failure(what: str, exc: Exception, secret_values: Iterable[str]) -> DeliveryError:
    """A DeliveryError saying `what` failed and why, with every secret value blanked out."""
    reason = str(exc) or type(exc).__name__
    for value in secret_values:
        if value:
            reason = reason.replace(value, "***")
    return DeliveryError(f"{what}: {reason}")


@contextmanager
def _failing_as(what: str, secret_values: Iterable[str]) -> Iterator[None]:
    """Any failure of a storage client, as a DeliveryError (its own reasons are an open set)."""
    try:
        yield
    except DeliveryError:
        raise
    except Exception as exc:
        raise _failure(what, exc, secret_values) from exc


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_SIZE):
        yield chunk


def _copy_tree(source: Path, target: Path, sizes: Mapping[str, int], report: _Report) -> None:
    if target.exists() and not target.is_dir():
        raise DeliveryError(f"{target} exists and is not a directory")
    done = 0
    try:
        for name in sizes:
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
            try:
                with (source / name).open("rb") as src, temp.open("wb") as dst:
                    for chunk in _chunks(src):
                        dst.write(chunk)
                        done += len(chunk)
                        report(done)
                os.replace(temp, path)
            finally:
                temp.unlink(missing_ok=True)
    except OSError as exc:
        raise DeliveryError(f"could not write to {target}: {exc.strerror or exc}") from exc


def _object_store(
    dest: S3Destination | GcsDestination, secrets: Mapping[str, str]
) -> tuple[Any, str]:
    """An fsspec filesystem for the bucket, with the user's credentials, and the root path."""
    import fsspec

    label, protocol = ("S3", "s3") if isinstance(dest, S3Destination) else ("GCS", "gcs")
    try:
        filesystem = fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        raise DeliveryError(
            f"{label} export needs the cloud extra: pip install 'tuneforge[cloud]'"
        ) from exc
    if isinstance(dest, S3Destination):
        from tuneforge.pinned_aiohttp import PinnedResolver  # aiohttp comes with s3fs

        client = {"endpoint_url": dest.endpoint_url, "region_name": dest.region}
        options: dict[str, Any] = {
            "key": _secret(secrets, dest.access_key_secret),
            "secret": _secret(secrets, dest.secret_key_secret),
            "client_kwargs": {k: v for k, v in client.items() if v is not None},
            # to the endpoint's checked addresses (`tuneforge.pinned`)
            "config_kwargs": {"connector_args": {"resolver": PinnedResolver()}},
        }
    else:
        try:
            options = {"token": json.loads(_secret(secrets, dest.credentials_secret))}
        except json.JSONDecodeError as exc:
            raise DeliveryError(
                f"the secret {dest.credentials_secret} is not a service account's JSON key"
            ) from exc
    fs = filesystem(skip_instance_cache=True, use_listings_cache=False, **options)
    return fs, dest.url.split("://", 1)[1]


def _put_tree(
    dest: S3Destination | GcsDestination,
    source: Path,
    sizes: Mapping[str, int],
    secrets: Mapping[str, str],
    report: _Report,
) -> None:
    from fsspec.callbacks import Callback

    fs, root = _object_store(dest, secrets)
    done = 0
    sent: list[str] = []
    try:
        for name, size in sizes.items():
            with _failing_as(f"could not upload {name} to {dest.url}", secrets.values()):
                fs.put_file(
                    str(source / name),
                    f"{root}/{name}",
                    callback=Callback(hooks={"progress": _progress_hook(report, done)}),
                    chunksize=max(
                        PART_SIZE, math.ceil(size / _MAX_PARTS / CHUNK_SIZE) * CHUNK_SIZE
                    ),
                )
            sent.append(name)
            done += size
    except BaseException as exc:
        left = _withdraw(fs, root, sent)
        if left and isinstance(exc, DeliveryError):
            raise DeliveryError(
                f"{exc}. {len(left)} file(s) already uploaded could not be removed from "
                f"{dest.url} ({', '.join(left[:5])}): delete them there, or export again"
            ) from exc
        raise


def _withdraw(fs: Any, root: str, sent: list[str]) -> list[str]:
    """Delete the files of an unfinished delivery, so that no half of an export stays
    published; the names that could not be deleted (the store is unreachable: the first
    failure stops the attempt)."""
    for index, name in enumerate(sent):
        try:
            fs.rm_file(f"{root}/{name}")
        except Exception:
            return sent[index:]
    return []


def _progress_hook(report: _Report, done: int) -> Callable[..., None]:
    def hook(size: int | None, value: int, **_: Any) -> None:
        report(done + value)

    return hook


@contextmanager
def _hub(dest: HubDestination, secrets: Mapping[str, str], endpoint: str) -> Iterator[HfApi]:
    """A Hub client with the user's token; whatever fails in its block, as a DeliveryError."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    # Exports send the user's files where they asked, and nothing anywhere else.
    constants.HF_HUB_DISABLE_TELEMETRY = True
    token = _secret(secrets, dest.token_secret)
    try:
        yield HfApi(endpoint=endpoint, token=token)
    except DeliveryError:
        raise
    except OfflineModeIsEnabled as exc:
        raise DeliveryError(
            "cannot reach the Hugging Face Hub: offline mode is on in this worker "
            "(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
        ) from exc
    except Exception as exc:
        status = exc.response.status_code if isinstance(exc, HfHubHTTPError) else None
        if status in (401, 403):
            raise DeliveryError(
                f"the Hub refused the token in your secret {dest.token_secret} ({status}): it "
                f"must be valid and allowed to write to {dest.repo_id}"
            ) from exc
        raise _failure(f"the Hugging Face Hub at {endpoint} failed", exc, [token]) from exc


def _hub_upload(
    dest: HubDestination,
    source: Path,
    sizes: Mapping[str, int],
    secrets: Mapping[str, str],
    endpoint: str,
    report: _Report,
) -> None:
    from huggingface_hub import CommitOperationAdd

    report(0)
    with _hub(dest, secrets, endpoint) as api:
        api.create_repo(dest.repo_id, private=dest.private, exist_ok=True, repo_type="model")
        if dest.private and api.model_info(dest.repo_id).private is False:
            raise DeliveryError(
                f"{dest.repo_id} already exists and is public: to publish into it, export "
                "with private set to false, or choose another repository"
            )
        api.create_commit(
            dest.repo_id,
            [CommitOperationAdd(name, source / name) for name in sizes],
            commit_message="Upload a model exported by TuneForge",
        )
    report(sum(sizes.values()))
