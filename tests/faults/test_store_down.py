"""The S3 store an export goes to (moto's server) is down or fails during the upload.

The S3 client reaches moto through a TCP relay that the test can cut: `down()` closes every
connection and refuses new ones (the store is unreachable), `up()` brings it back on the same
port, `down_after(n)` cuts once n request bytes have passed (mid-upload), and `refuse(text)`
drops any request containing `text` (one upload fails while the store answers the rest).
Each time the delivery fails naming the reason, no file of the export stays under the
destination prefix (or the error names the ones an unreachable store kept), and the same
export succeeds once the store is back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tests.export.conftest import Bucket, bucket  # noqa: F401  (the fixture)
from tests.export.test_export_api import export
from tests.fine_tuned import add_fine_tuned
from tuneforge.export.destinations import DeliveryError, S3Destination, deliver


class Relay:
    """A TCP relay on loopback to `target` (host, port) that can fail on demand."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        self.passed = 0
        self.limit: int | None = None
        self.refused: bytes | None = None
        self.listener: socket.socket | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.listener, self.limit = listener, None
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            connections, self.connections = self.connections, []
        for sock in [*connections, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def down_after(self, request_bytes: int) -> None:
        self.passed, self.limit = 0, request_bytes

    def refuse(self, text: str) -> None:
        self.refused = text.encode()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by down()
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.connections += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, request: bool) -> None:
        try:
            while data := source.recv(65536):
                if request and self.refused is not None and self.refused in data:
                    break
                if request and self.limit is not None:
                    self.passed += len(data)
                    if self.passed > self.limit:
                        self.down()
                        return
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(moto_endpoint: str) -> Iterator[Relay]:
    address = urlsplit(moto_endpoint)
    relay = Relay((address.hostname or "127.0.0.1", address.port or 80))
    yield relay
    relay.down()


@pytest.fixture
def few_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """One attempt per request: the S3 clients' retries (there for a flaky network) would
    make the test wait most of a minute before the delivery gives up, as it then does."""
    import s3fs

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    out = tmp_path / "export"
    out.mkdir()
    (out / "a-config.json").write_bytes(b'{"r": 8}')
    (out / "b-weights.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    (out / "c-readme.md").write_bytes(b"# A model\n")
    return out


def destination(target: Bucket, relay: Relay) -> S3Destination:
    return S3Destination(url=f"s3://{target.name}/support", endpoint_url=relay.url)


def in_bucket(target: Bucket) -> dict[str, int]:
    listed = target.client.list_objects_v2(Bucket=target.name, Prefix="support/")
    return {o["Key"].removeprefix("support/"): o["Size"] for o in listed.get("Contents", [])}


@pytest.mark.timeout(300)
def test_a_failed_upload_withdraws_the_files_already_sent(
    bucket: Bucket,  # noqa: F811
    relay: Relay,
    export_dir: Path,
    few_retries: None,
) -> None:
    relay.refuse("/support/b-weights.bin")  # the store drops this upload, answers the rest
    with pytest.raises(DeliveryError, match=r"could not upload b-weights\.bin") as failed:
        deliver(destination(bucket, relay), export_dir, bucket.secrets)
    assert f"s3://{bucket.name}/support" in str(failed.value)
    assert "could not be removed" not in str(failed.value)
    assert in_bucket(bucket) == {}  # a-config.json was sent, then withdrawn

    relay.refused = None
    delivered = deliver(destination(bucket, relay), export_dir, bucket.secrets)
    assert delivered.files == ["a-config.json", "b-weights.bin", "c-readme.md"]
    assert in_bucket(bucket) == {p.name: p.stat().st_size for p in export_dir.iterdir()}


@pytest.mark.timeout(300)
def test_a_store_that_goes_down_mid_upload_names_what_it_kept(
    bucket: Bucket,  # noqa: F811
    relay: Relay,
    export_dir: Path,
    few_retries: None,
) -> None:
    relay.down_after(1 << 20)  # inside b-weights.bin, after a-config.json is stored
    with pytest.raises(DeliveryError, match=r"could not upload b-weights\.bin") as failed:
        deliver(destination(bucket, relay), export_dir, bucket.secrets)
    message = str(failed.value)
    assert "1 file(s) already uploaded could not be removed" in message
    assert "(a-config.json)" in message
    assert "b-weights.bin" not in in_bucket(bucket)  # the interrupted upload never appears

    relay.up()
    deliver(destination(bucket, relay), export_dir, bucket.secrets)
    assert in_bucket(bucket) == {p.name: p.stat().st_size for p in export_dir.iterdir()}


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_an_export_to_a_store_that_is_down_fails_with_the_reason(
    make_client,
    settings,
    tiny_adapter: Path,
    bucket: Bucket,  # noqa: F811
    relay: Relay,
) -> None:
    client = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=["127.0.0.1"])
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", tiny_adapter, "Support bot")
    for name, value in bucket.secrets.items():
        client.put(f"/api/v1/secrets/{name}", json={"value": value}, headers=alice)
    to_s3 = {"kind": "s3", "url": f"s3://{bucket.name}/support", "endpoint_url": relay.url}
    relay.down()
    failed = export(client, alice, model_id, format="adapter", destination=to_s3)
    assert failed["status"] == "failed"
    assert f"to s3://{bucket.name}/support" in failed["error"]
    assert "Could not connect" in failed["error"]
    assert in_bucket(bucket) == {}
    assert wait_status(client, failed["job_id"], alice, "failed")["error"] == failed["error"]
    assert client.get("/api/v1/models", headers=alice).status_code == 200  # still serving

    relay.up()
    done = export(client, alice, model_id, format="adapter", destination=to_s3)
    assert done["status"] == "succeeded", done["error"]
    assert in_bucket(bucket) == {f["name"]: f["size"] for f in done["files"]}
