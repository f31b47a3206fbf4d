"""Delivering an export's files: to a directory, to S3 (moto on loopback, with IAM checks on),
to the Hugging Face Hub (a fake Hub on loopback), and the listing-back check that guards them."""

from __future__ import annotations

import ipaddress
import random
import socket
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import huggingface_hub.constants
import pytest
from huggingface_hub import HfApi
from pydantic import TypeAdapter, ValidationError

from tests.export.conftest import Bucket
from tests.hub_server import FakeHub
from tuneforge.export import destinations
from tuneforge.export.destinations import (
    Delivery,
    DeliveryError,
    Destination,
    DirectoryDestination,
    DownloadDestination,
    GcsDestination,
    HubDestination,
    S3Destination,
    deliver,
    describe,
    list_files,
    required_secrets,
)
from tuneforge.pinned import pin

MIB = 1024 * 1024


def contents(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    root = tmp_path / "export"
    rng = random.Random(3)
    files = {
        "adapter_config.json": b'{"r": 16, "lora_alpha": 32}',
        "adapter_model.safetensors": rng.randbytes(300_000),
        "tokenizer/tokenizer.json": rng.randbytes(20_000),
        "tokenizer/special/tokens.txt": b"<start_of_turn>\n<end_of_turn>\n",
        "empty.txt": b"",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


# -- The destination models ------------------------------------------------------------------


def test_each_kind_parses_and_describes_itself() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Destination)
    cases = [
        ({"kind": "download"}, "download", []),
        ({"kind": "directory", "path": "/srv/models/x/"}, "/srv/models/x", []),
        (
            {"kind": "s3", "url": "s3://bucket/p/", "endpoint_url": "http://minio:9000"},
            "s3://bucket/p",
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        ),
        ({"kind": "gcs", "url": "gs://bucket"}, "gs://bucket", ["GCS_CREDENTIALS"]),
        (
            {"kind": "hub", "repo_id": "user/name", "token_secret": "MY_HF"},
            "Hugging Face Hub: user/name (private)",
            ["MY_HF"],
        ),
        (
            {"kind": "hub", "repo_id": "org-1/Gemma_3.ft", "private": False},
            "Hugging Face Hub: org-1/Gemma_3.ft (public)",
            ["HF_TOKEN"],
        ),
    ]
    for data, label, secrets in cases:
        dest = adapter.validate_python(data)
        assert dest.kind == data["kind"]
        assert describe(dest) == label
        assert required_secrets(dest) == secrets
    schema = adapter.json_schema()
    for model in schema["$defs"].values():
        assert all("description" in field for field in model["properties"].values()), model


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "directory", "path": "relative/dir"},
        {"kind": "directory", "path": "/srv/a\x00b"},
        {"kind": "s3", "url": "gs://bucket"},
        {"kind": "s3", "url": "s3://Bucket"},
        {"kind": "s3", "url": "s3://ab"},
        {"kind": "s3", "url": "s3://bucket/a//b"},
        {"kind": "s3", "url": "s3://bucket/../x"},
        {"kind": "s3", "url": "s3://bucket", "endpoint_url": "ftp://x"},
        {"kind": "s3", "url": "s3://bucket", "access_key_secret": "lower_case"},
        {"kind": "s3", "url": "s3://bucket", "access_key": "AKIA..."},  # no credentials inline
        {"kind": "gcs", "url": "s3://bucket"},
        {"kind": "hub", "repo_id": "name-without-namespace"},
        {"kind": "hub", "repo_id": "user/-starts-with-dash"},
        {"kind": "hub", "repo_id": "user/a--b"},
        {"kind": "hub", "repo_id": "user/a..b"},
        {"kind": "hub", "repo_id": "user/x.git"},
        {"kind": "hub", "repo_id": "user/café"},
        {"kind": "hub", "repo_id": "user/" + "x" * 97},
        {"kind": "hub", "repo_id": "a/b/c"},
        {"kind": "ftp", "url": "ftp://x"},
    ],
)
def test_invalid_destinations_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Destination).validate_python(data)


# -- Download and directory -------------------------------------------------------------------


def test_download_moves_nothing(export_dir: Path) -> None:
    delivery = deliver(DownloadDestination(), export_dir, {})
    assert delivery == Delivery("download", sorted(contents(export_dir)))


def test_directory_delivery_copies_nested_files(export_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "srv" / "models" / "mine"  # does not exist yet
    dest = DirectoryDestination(path=str(target))
    seen: list[tuple[int, int]] = []
    delivery = deliver(
        dest, export_dir, {}, progress=lambda done, total: seen.append((done, total))
    )
    expected = contents(export_dir)
    assert delivery == Delivery(str(target), sorted(expected))
    assert contents(target) == expected  # nothing else either: no temporary files left over
    total = sum(len(data) for data in expected.values())
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert list_files(dest, {}) == {name: len(data) for name, data in expected.items()}
    # Delivering again replaces the files in place.
    (export_dir / "adapter_config.json").write_bytes(b'{"r": 8}')
    deliver(dest, export_dir, {})
    assert (target / "adapter_config.json").read_bytes() == b'{"r": 8}'


def test_directory_delivery_refuses_a_file(export_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("mine")
    with pytest.raises(DeliveryError, match="is not a directory"):
        deliver(DirectoryDestination(path=str(target)), export_dir, {})
    assert target.read_text() == "mine"


def test_an_empty_export_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="holds no files"):
        deliver(DirectoryDestination(path=str(tmp_path / "out")), tmp_path, {})


def test_the_listing_back_check_can_fail(
    export_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_list_files = destinations.list_files
    dest = DirectoryDestination(path=str(tmp_path / "out"))

    def dropping(*args: Any, **kwargs: Any) -> dict[str, int]:
        found = real_list_files(*args, **kwargs)
        del found["tokenizer/tokenizer.json"]
        return found

    monkeypatch.setattr(destinations, "list_files", dropping)
    with pytest.raises(
        DeliveryError, match=r"does not hold .*tokenizer/tokenizer\.json \(missing\)"
    ):
        deliver(dest, export_dir, {})

    def shrinking(*args: Any, **kwargs: Any) -> dict[str, int]:
        found = real_list_files(*args, **kwargs)
        found["adapter_model.safetensors"] -= 1
        return found

    monkeypatch.setattr(destinations, "list_files", shrinking)
    with pytest.raises(
        DeliveryError, match=r"adapter_model\.safetensors \(299999 bytes, not 300000\)"
    ):
        deliver(dest, export_dir, {})


# -- S3 ---------------------------------------------------------------------------------------


def test_s3_delivery_lists_back_in_the_bucket(
    bucket: Bucket, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(destinations, "PART_SIZE", 5 * MIB)  # S3's smallest part
    (export_dir / "model.gguf").write_bytes(random.Random(5).randbytes(11 * MIB + 7))
    dest = S3Destination(url=f"s3://{bucket.name}/exports/run-1", endpoint_url=bucket.endpoint)
    seen: list[tuple[int, int]] = []
    delivery = deliver(dest, export_dir, bucket.secrets, progress=lambda *p: seen.append(p))

    expected = contents(export_dir)
    assert delivery == Delivery(f"s3://{bucket.name}/exports/run-1", sorted(expected))
    listing = bucket.client.list_objects_v2(Bucket=bucket.name)["Contents"]
    assert {o["Key"]: o["Size"] for o in listing} == {
        f"exports/run-1/{name}": len(data) for name, data in expected.items()
    }
    etags = {o["Key"]: o["ETag"].strip('"') for o in listing}
    assert etags["exports/run-1/model.gguf"].endswith("-3")  # a multipart upload of 3 parts
    for name in ("adapter_config.json", "model.gguf"):
        body = bucket.client.get_object(Bucket=bucket.name, Key=f"exports/run-1/{name}")["Body"]
        assert body.read() == expected[name]
    assert not bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads")
    total = sum(len(data) for data in expected.values())
    assert seen[-1] == (total, total)
    assert len(seen) > len(expected)  # the large file reports its parts as they go
    assert list_files(dest, bucket.secrets) == {name: len(data) for name, data in expected.items()}


def test_s3_errors_name_the_bucket_and_never_the_secrets(bucket: Bucket, export_dir: Path) -> None:
    missing = S3Destination(url="s3://no-such-bucket/x", endpoint_url=bucket.endpoint)
    with pytest.raises(DeliveryError, match="no-such-bucket") as caught:
        deliver(missing, export_dir, bucket.secrets)
    assert "does not exist" in str(caught.value)

    dest = S3Destination(url=f"s3://{bucket.name}/x", endpoint_url=bucket.endpoint)
    wrong = dict(bucket.secrets, AWS_SECRET_ACCESS_KEY="wrong-secret-value-1234567890")
    with pytest.raises(DeliveryError, match=bucket.name) as caught:
        deliver(dest, export_dir, wrong)
    for error in (caught.value, caught.value.__cause__):
        assert "wrong-secret-value" not in str(error)
    assert bucket.secrets["AWS_SECRET_ACCESS_KEY"] not in str(caught.value)
    assert not bucket.client.list_objects_v2(Bucket=bucket.name).get("Contents")

    with pytest.raises(DeliveryError, match="secret AWS_SECRET_ACCESS_KEY is not set"):
        deliver(dest, export_dir, {"AWS_ACCESS_KEY_ID": "x"})


def test_gcs_needs_the_cloud_extra(export_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # not installed (as in this environment)
    dest = GcsDestination(url="gs://bucket/models")
    with pytest.raises(DeliveryError) as caught:
        deliver(dest, export_dir, {"GCS_CREDENTIALS": "{}"})
    assert str(caught.value) == "GCS export needs the cloud extra: pip install 'tuneforge[cloud]'"


# -- Hugging Face Hub -------------------------------------------------------------------------


def test_hub_delivery_commits_every_file(hub: FakeHub, export_dir: Path) -> None:
    dest = HubDestination(repo_id="tester/gemma-ft")
    secrets = {"HF_TOKEN": "hf_test"}
    seen: list[tuple[int, int]] = []
    delivery = deliver(
        dest, export_dir, secrets, hub_endpoint=hub.url, progress=lambda *p: seen.append(p)
    )

    expected = contents(export_dir)
    assert delivery == Delivery(f"{hub.url}/tester/gemma-ft", sorted(expected))
    assert hub.repos["tester/gemma-ft"] == expected
    assert hub.private == {"tester/gemma-ft": True}
    assert hub.commits["tester/gemma-ft"] == ["Upload a model exported by TuneForge"]
    total = sum(len(data) for data in expected.values())
    assert seen == [(0, total), (total, total)]
    sizes = {name: len(data) for name, data in expected.items()}
    assert list_files(dest, secrets, hub_endpoint=hub.url) == sizes
    # A retried job delivers again: the unchanged files make no new commit, and it succeeds.
    assert deliver(dest, export_dir, secrets, hub_endpoint=hub.url) == delivery
    assert len(hub.commits["tester/gemma-ft"]) == 1


def test_the_fake_hub_lists_trees_like_the_hub(hub: FakeHub) -> None:
    hub.repos["tester/m"] = {"a.json": b"{}", "w/x.bin": b"12", "w/deep/y.bin": b"345"}
    api = HfApi(endpoint=hub.url, token="hf_test")

    def tree(path: str | None = None, recursive: bool = False) -> dict[str, int | None]:
        items = api.list_repo_tree("tester/m", path, recursive=recursive)
        return {item.path: getattr(item, "size", None) for item in items}

    assert tree() == {"a.json": 2, "w": None}
    assert tree("w") == {"w/x.bin": 2, "w/deep": None}
    assert tree(recursive=True) == {
        "a.json": 2,
        "w": None,
        "w/deep": None,
        "w/deep/y.bin": 3,
        "w/x.bin": 2,
    }
    assert api.list_repo_files("tester/m") == ["a.json", "w/deep/y.bin", "w/x.bin"]


def test_hub_public_repository(hub: FakeHub, export_dir: Path) -> None:
    dest = HubDestination(repo_id="tester/open-model", private=False)
    deliver(dest, export_dir, {"HF_TOKEN": "hf_test"}, hub_endpoint=hub.url)
    assert hub.private == {"tester/open-model": False}
    assert hub.repos["tester/open-model"] == contents(export_dir)


def test_hub_refuses_to_put_a_private_export_into_a_public_repository(
    hub: FakeHub, export_dir: Path
) -> None:
    hub.repos["tester/shared"], hub.private["tester/shared"] = {}, False
    hub.commits["tester/shared"] = []
    with pytest.raises(DeliveryError, match="already exists and is public"):
        deliver(
            HubDestination(repo_id="tester/shared"),
            export_dir,
            {"HF_TOKEN": "hf_test"},
            hub_endpoint=hub.url,
        )
    assert hub.repos["tester/shared"] == {}


@pytest.mark.parametrize(
    ("repo_id", "token", "status"),
    [("tester/model", "hf_wrong_token_value", 401), ("someone-else/model", "hf_test", 403)],
)
def test_hub_refusals_blame_the_token(
    hub: FakeHub, export_dir: Path, repo_id: str, token: str, status: int
) -> None:
    dest = HubDestination(repo_id=repo_id, token_secret="MY_HF_TOKEN")
    with pytest.raises(DeliveryError) as caught:
        deliver(dest, export_dir, {"MY_HF_TOKEN": token}, hub_endpoint=hub.url)
    message = str(caught.value)
    assert "the Hub refused the token in your secret MY_HF_TOKEN" in message
    assert f"({status})" in message and repo_id in message
    assert token not in message
    assert hub.repos == {}


def test_hub_offline_mode_is_explained(
    hub: FakeHub, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DeliveryError, match=r"offline mode is on .*HF_HUB_OFFLINE"):
        deliver(
            HubDestination(repo_id="tester/m"),
            export_dir,
            {"HF_TOKEN": "hf_test"},
            hub_endpoint=hub.url,
        )
    assert hub.repos == {}


def test_s3_exports_connect_to_the_pinned_address(
    bucket: Bucket, export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint check's pin holds for s3fs too (DNS rebinding: tests/jobs/
    test_endpoint_pinning.py): its connections go to the checked address, not to what the
    name resolves to later."""
    host = f"s3-{uuid.uuid4().hex[:8]}"  # no dot: moto then reads the bucket from the path
    real = socket.getaddrinfo

    def getaddrinfo(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == host:  # what the name says now: nothing listens there
            return real("127.0.0.2", *args, **kwargs)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    port = urlsplit(bucket.endpoint).port
    dest = S3Destination(url=f"s3://{bucket.name}/pinned", endpoint_url=f"http://{host}:{port}")
    with pytest.raises(DeliveryError):
        deliver(dest, export_dir, bucket.secrets)
    pin(host, [ipaddress.ip_address("127.0.0.1")])  # what the check approved
    deliver(dest, export_dir, bucket.secrets)
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="pinned/")["Contents"]
    assert {o["Key"] for o in listed} == {f"pinned/{name}" for name in contents(export_dir)}
