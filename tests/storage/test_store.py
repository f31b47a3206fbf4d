"""ArtifactStore against a local directory and a real (moto) S3 server on loopback."""

from __future__ import annotations

import importlib
import io
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tuneforge.storage import ArtifactStore, StorageError, artifact_prefix
from tuneforge.storage.store import ArtifactNotFound, InvalidKeyError, TooLargeError

MIB = 1024 * 1024
S3_BLOCK = 5 * MIB  # the smallest S3 multipart part; lets tests cross a real part upload


@dataclass
class Backend:
    store: ArtifactStore
    new_store: Callable[[], ArtifactStore]  # a second, independent client on the same root
    raw_names: Callable[[], list[str]]  # everything physically stored, temp names included
    pending_uploads: Callable[[], int]  # unfinished multipart uploads (always 0 locally)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        root = tmp_path / "artifacts"  # does not exist yet: the store creates it
        url = root.as_uri()

        def raw_names() -> list[str]:
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

        store = ArtifactStore(url)
        return Backend(store, lambda: ArtifactStore(url), raw_names, lambda: 0)

    endpoint = request.getfixturevalue("moto_endpoint")
    monkeypatch = request.getfixturevalue("monkeypatch")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    bucket = f"tf-{uuid.uuid4().hex}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    options: dict[str, Any] = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "skip_instance_cache": True,
        "use_listings_cache": False,
        "default_block_size": S3_BLOCK,
    }
    url = f"s3://{bucket}/root"

    def raw_names_s3() -> list[str]:
        listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(obj["Key"].removeprefix("root/") for obj in listing)

    def pending_uploads() -> int:
        return len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    return Backend(
        ArtifactStore(url, options),
        lambda: ArtifactStore(url, options),
        raw_names_s3,
        pending_uploads,
    )


def test_bytes_roundtrip_size_exists(backend: Backend) -> None:
    store = backend.store
    assert not store.exists("u1/dataset/d1/data.parquet")
    store.write_bytes("u1/dataset/d1/data.parquet", b"hello parquet")
    assert store.exists("u1/dataset/d1/data.parquet")
    assert not store.exists("u1/dataset/d1")  # a prefix is not a file
    assert store.read_bytes("u1/dataset/d1/data.parquet") == b"hello parquet"
    assert store.size("u1/dataset/d1/data.parquet") == 13
    store.write_bytes("u1/dataset/d1/data.parquet", b"v2")  # overwrite
    assert store.read_bytes("u1/dataset/d1/data.parquet") == b"v2"
    store.write_bytes("u1/dataset/d1/empty", b"")
    assert store.read_bytes("u1/dataset/d1/empty") == b""
    assert store.size("u1/dataset/d1/empty") == 0


def test_stream_and_file_roundtrip(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    chunks = [os.urandom(1000) for _ in range(7)]
    assert store.write_stream("u1/model/m1/a.bin", iter(chunks)) == 7000
    assert store.read_bytes("u1/model/m1/a.bin") == b"".join(chunks)

    big = os.urandom(S3_BLOCK + 123)  # crosses a multipart part on S3
    assert store.write_stream("u1/model/m1/big.bin", io.BytesIO(big)) == len(big)
    assert store.size("u1/model/m1/big.bin") == len(big)
    pieces = list(store.iter_chunks("u1/model/m1/big.bin", chunk_size=MIB))
    assert b"".join(pieces) == big
    assert all(len(p) <= MIB for p in pieces) and len(pieces) == 6
    with store.open("u1/model/m1/big.bin") as f:
        assert f.read(10) == big[:10]

    local = tmp_path / "adapter.safetensors"
    local.write_bytes(b"weights" * 100)
    store.put_file("u1/model/m1/adapter.safetensors", local)
    assert store.read_bytes("u1/model/m1/adapter.safetensors") == local.read_bytes()
    assert backend.pending_uploads() == 0


def test_list_sorted_recursive_relative(backend: Backend) -> None:
    store = backend.store
    assert store.list() == []
    for key in ["u2/x/1/b", "u1/x/1/z", "u1/x/1/a", "u1/x/10/a", "u1/y/1/deep/er/f"]:
        store.write_bytes(key, key.encode())
    assert store.list() == ["u1/x/1/a", "u1/x/1/z", "u1/x/10/a", "u1/y/1/deep/er/f", "u2/x/1/b"]
    assert store.list("u1/x/1") == ["u1/x/1/a", "u1/x/1/z"]  # not u1/x/10
    assert store.list("u1/y") == ["u1/y/1/deep/er/f"]
    assert store.list("nobody") == []


def test_delete_file_and_prefix(backend: Backend) -> None:
    store = backend.store
    for key in ["u1/m/1/a", "u1/m/1/sub/b", "u1/m/10/a", "u1/m/2/a"]:
        store.write_bytes(key, b"x")
    store.delete("u1/m/2/a")
    assert not store.exists("u1/m/2/a")
    store.delete("u1/m/1")
    assert store.list() == ["u1/m/10/a"]
    store.delete("u1/m/1")  # missing is not an error
    store.delete("never/was/here")
    assert backend.raw_names() == ["u1/m/10/a"]


def test_missing_key_errors(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    store.write_bytes("u1/d/1/present", b"x")
    calls: list[Callable[[], object]] = [
        lambda: store.read_bytes("u1/d/1/missing"),
        lambda: store.read_bytes("u1/d/1"),  # a prefix, not a file
        lambda: store.open("u1/d/1/missing"),
        lambda: store.size("u1/d/1/missing"),
        lambda: store.size("u1/d/1"),
        lambda: list(store.iter_chunks("u1/d/1/missing")),
        lambda: store.get_dir("u1/d/2", tmp_path / "out"),
    ]
    for call in calls:
        with pytest.raises(ArtifactNotFound) as info:
            call()
        assert isinstance(info.value, FileNotFoundError)
        assert isinstance(info.value, StorageError)


@pytest.mark.parametrize(
    "key", ["", "/abs/key", "a/../b", "..", "a/..", "./a", "a//b", "a/", "a\\b", "a\x00b", "a/*"]
)
def test_bad_keys_rejected(backend: Backend, key: str, tmp_path: Path) -> None:
    store = backend.store
    calls: list[Callable[[], object]] = [
        lambda: store.write_bytes(key, b"x"),
        lambda: store.read_bytes(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.put_dir(key, tmp_path),
    ]
    if key:  # list("") means the whole store
        calls.append(lambda: store.list(key))
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert issubclass(InvalidKeyError, StorageError) and issubclass(InvalidKeyError, ValueError)
    assert backend.raw_names() == []


def test_artifact_prefix() -> None:
    assert artifact_prefix("u1", "dataset", "d9") == "u1/dataset/d9"
    for parts in [("", "k", "i"), ("u/1", "k", "i"), ("u", "..", "i"), ("u", "k", "i\x00")]:
        with pytest.raises(InvalidKeyError):
            artifact_prefix(*parts)


def test_write_stream_over_limit_leaves_nothing(backend: Backend) -> None:
    store = backend.store
    store.write_bytes("u1/up/1/keep", b"old")
    chunks = [b"a" * 400, b"b" * 400, b"c" * 400]
    with pytest.raises(TooLargeError):
        store.write_stream("u1/up/1/file", iter(chunks), max_bytes=1000)
    with pytest.raises(TooLargeError):  # an existing version survives a rejected overwrite
        store.write_stream("u1/up/1/keep", iter(chunks), max_bytes=1000)
    assert store.write_stream("u1/up/1/ok", iter(chunks), max_bytes=1200) == 1200
    assert backend.raw_names() == ["u1/up/1/keep", "u1/up/1/ok"]
    assert store.read_bytes("u1/up/1/keep") == b"old"
    assert backend.pending_uploads() == 0


def test_failure_mid_stream_leaves_nothing(backend: Backend) -> None:
    store = backend.store

    def broken() -> Iterator[bytes]:
        yield os.urandom(S3_BLOCK + 1)  # on S3 this uploads a real multipart part first
        yield b"more"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        store.write_stream("u1/up/2/file", broken())
    assert not store.exists("u1/up/2/file")
    assert backend.raw_names() == []
    assert backend.pending_uploads() == 0

    store.write_bytes("u1/up/2/file", b"previous")
    with pytest.raises(RuntimeError):
        store.write_stream("u1/up/2/file", broken())
    assert store.read_bytes("u1/up/2/file") == b"previous"
    assert backend.raw_names() == ["u1/up/2/file"]


def test_partial_write_is_invisible(backend: Backend) -> None:
    store = backend.store
    seen_raw: list[list[str]] = []

    def chunks() -> Iterator[bytes]:
        yield b"first half "
        assert store.exists("u1/up/3/file") is False
        assert store.list() == []
        assert backend.new_store().list() == []
        seen_raw.append(backend.raw_names())
        yield b"second half"

    assert store.write_stream("u1/up/3/file", chunks()) == 22
    assert store.list() == ["u1/up/3/file"]
    assert store.read_bytes("u1/up/3/file") == b"first half second half"
    [raw] = seen_raw
    if store.url.startswith("file:"):  # the bytes went to a hidden temporary sibling
        assert len(raw) == 1 and raw[0].startswith("u1/up/3/.file.tmp-")
    else:  # an unfinished multipart upload is not an object
        assert raw == []


def test_second_client_sees_writes_and_deletes(backend: Backend) -> None:
    other = backend.new_store()
    assert other.list() == []
    backend.store.write_bytes("u1/k/1/a", b"1")
    assert other.list() == ["u1/k/1/a"] and other.exists("u1/k/1/a")
    other.delete("u1/k/1")
    assert backend.store.list() == [] and not backend.store.exists("u1/k/1/a")


def test_put_dir_get_dir(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    src = tmp_path / "adapter"
    (src / "nested" / "deeper").mkdir(parents=True)
    files = {
        "adapter_config.json": b"{}",
        "adapter_model.safetensors": os.urandom(3000),
        "nested/deeper/tokenizer.json": b'{"v": 1}',
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    prefix = artifact_prefix("u1", "adapter", "a1")

    assert not store.is_complete(prefix)
    store.put_dir(prefix, src)
    assert store.is_complete(prefix)
    assert store.list(prefix) == sorted([f"{prefix}/{r}" for r in files] + [f"{prefix}/_COMPLETE"])

    out = tmp_path / "download"
    store.get_dir(prefix, out)
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files


def test_incomplete_prefix_refused(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    store.write_bytes("u1/adapter/a2/adapter_config.json", b"{}")  # e.g. a crashed upload
    assert not store.is_complete("u1/adapter/a2")
    with pytest.raises(ArtifactNotFound, match="no complete artifact"):
        store.get_dir("u1/adapter/a2", tmp_path / "out")
    assert not (tmp_path / "out").exists()

    reserved = tmp_path / "reserved"
    reserved.mkdir()
    (reserved / "_COMPLETE").write_bytes(b"")
    with pytest.raises(StorageError, match="reserved"):
        store.put_dir("u1/adapter/a3", reserved)
    assert not store.is_complete("u1/adapter/a3")


def test_failed_reupload_is_not_complete(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = backend.store
    src = tmp_path / "model"
    src.mkdir()
    for name in ("a.bin", "b.bin"):
        (src / name).write_bytes(name.encode())
    store.put_dir("u1/model/m1", src)
    assert store.is_complete("u1/model/m1")

    real_put_file = store.put_file

    def put_file_then_crash(key: str, local_path: str | Path) -> None:
        if key.endswith("b.bin"):
            raise OSError("disk vanished")
        real_put_file(key, local_path)

    monkeypatch.setattr(store, "put_file", put_file_then_crash)
    with pytest.raises(OSError, match="disk vanished"):
        store.put_dir("u1/model/m1", src)
    assert not store.is_complete("u1/model/m1")


def test_check_ok_and_leaves_no_probe(backend: Backend) -> None:
    assert backend.store.check() is None
    assert backend.raw_names() == []


def test_check_reports_unwritable_root(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"not a directory")
    store = ArtifactStore((tmp_path / "root").as_uri())
    (tmp_path / "root").rmdir()
    (tmp_path / "root").symlink_to(tmp_path / "blocker")
    reason = store.check()
    assert reason is not None and "root" in reason


def test_missing_cloud_extra_named(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = importlib.import_module("fsspec.registry")
    for proto in ("gs", "gcs"):
        monkeypatch.delitem(registry._registry, proto, raising=False)
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # makes `import gcsfs` fail
    with pytest.raises(StorageError, match=r"pip install 'tuneforge\[cloud\]'"):
        ArtifactStore("gs://bucket/prefix")


def test_unsupported_url_rejected() -> None:
    with pytest.raises(StorageError, match="unsupported"):
        ArtifactStore("ftp://example.com/dir")
