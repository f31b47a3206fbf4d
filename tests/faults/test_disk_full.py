"""The disk fills up during an upload, a processing job, a training checkpoint and an export.

The data directory is a small tmpfs (the database lives beside it, as a PostgreSQL server or a
separate disk would). Each time the request or job fails with the sentence that says the disk is
full and how much is free, nothing half-written is left looking valid, the server keeps
serving, and the same action succeeds once space is freed. Mounting needs root (CI has it);
elsewhere these tests are skipped, saying why. The training and export cases run in the SQLite
pass only (`trains`, `heavy`): their database work is the upload and processing cases' and the
training and export API tests'.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_jobs_api import wait_status
from tests.api.test_training_api import log_lines, processed_dataset, spec, start_and_reach
from tests.conftest import add_user, bearer
from tests.export.test_export_api import export
from tests.fine_tuned import add_fine_tuned
from tuneforge.api.app import create_app
from tuneforge.services import accounts
from tuneforge.storage.disk_full import disk_full
from tuneforge.storage.store import COMPLETE_MARKER

FULL = "The disk is full:"
MB = 1 << 20


class Disk:
    """A tmpfs mounted at `path`; `fill(leave)` leaves about `leave` bytes free, `free()`
    gives the room back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / f"filler-{uuid.uuid4().hex}"

    def fill(self, leave: int) -> None:
        room = os.statvfs(self.path)
        size = room.f_bavail * room.f_frsize - leave
        with self.filler.open("ab") as f:
            while size > 0:
                f.write(b"\0" * min(size, MB))
                size -= MB

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def files(self) -> list[str]:
        """Every file on the disk but the filler (relative paths)."""
        return sorted(
            p.relative_to(self.path).as_posix()
            for p in self.path.rglob("*")
            if p.is_file() and p != self.filler
        )


def mounted(size_mb: int) -> Callable[[Path], Iterator[Disk]]:
    def fixture(tmp_path: Path) -> Iterator[Disk]:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (CI runs these tests as root)")
        path = tmp_path / "data"  # the data directory of `make_settings`
        path.mkdir()
        mount = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}M", "tmpfs", str(path)]
        done = subprocess.run(mount, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        try:
            yield Disk(path)
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)

    return fixture


small_disk = pytest.fixture(mounted(16))
model_disk = pytest.fixture(mounted(96))  # the tiny model's tokenizer alone is 33 MB


def jsonl(rows: int, noise: int = 0) -> bytes:
    """Question-answer rows; `noise` random hex digits in each question keep the Parquet copy
    about as large as the file (it does not compress away)."""
    digits = random.Random(0)
    lines = (
        {
            "question": f"What is {i} plus one? {digits.randbytes(noise // 2).hex()}",
            "answer": f"It is {i + 1}.",
        }
        for i in range(rows)
    )
    return "\n".join(json.dumps(line) for line in lines).encode()


def test_a_full_disk_is_recognised_inside_the_errors_that_wrap_it(tmp_path: Path) -> None:
    wrapped = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    wrapped.__context__ = OSError(errno.ENOSPC, "No space left on device")
    full = disk_full(wrapped, tmp_path)
    assert full is not None and full.code == "disk_full"
    assert full.message.startswith(FULL) and str(tmp_path) in full.message
    told = disk_full(Exception("I/O error: No space left on device (os error 28)"), tmp_path)
    assert told is not None and "MB free of" in told.message
    assert disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path) is None
    assert disk_full(ValueError("not a number"), tmp_path) is None


def test_any_request_that_fills_the_disk_says_so_with_507(
    make_settings, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that expect a full disk clean up after themselves (below); any other write of the
    web process still answers with the sentence, not a 500."""
    app = create_app(make_settings(auth="local"), ui=False)
    client = TestClient(app, raise_server_exceptions=False)
    alice = bearer(add_user(settings, "alice"))

    def no_room(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(accounts, "create_token", no_room)
    answer = client.post("/api/v1/tokens", json={"name": "ci"}, headers=alice)
    assert answer.status_code == 507
    assert answer.json()["error"]["code"] == "disk_full"
    assert answer.json()["error"]["message"].startswith(FULL)


def test_an_upload_that_fills_the_disk_leaves_nothing_and_works_after(
    small_disk: Disk, make_client, settings
) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    body = jsonl(8_000, noise=300)  # about 2.7 MB
    # Room for the scratch copy and the stored original, not for the Parquet beside them: the
    # original, stored first, must go again.
    small_disk.fill(leave=2 * len(body) + len(body) // 4)
    before = small_disk.files()
    failed = client.post(
        "/api/v1/datasets", files={"file": ("sums.jsonl", io.BytesIO(body))}, headers=alice
    )
    assert failed.status_code == 507, failed.text
    error = failed.json()["error"]
    assert error["code"] == "disk_full"
    assert error["message"].startswith(FULL) and "MB free of" in error["message"]
    assert small_disk.files() == before  # no scratch copy, no stored original, no Parquet
    listed = client.get("/api/v1/datasets", headers=alice)
    assert listed.status_code == 200 and listed.json()["items"] == []  # no record either

    small_disk.free()
    uploaded = client.post(
        "/api/v1/datasets", files={"file": ("sums.jsonl", io.BytesIO(body))}, headers=alice
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["rows"] == 8_000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_processing_job_that_fills_the_disk_fails_saying_so(
    small_disk: Disk, make_client, settings
) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    raw = client.post(
        "/api/v1/datasets",
        files={"file": ("sums.jsonl", io.BytesIO(jsonl(20_001)))},  # a job processes it
        headers=alice,
    ).json()
    config = {"mapping": raw["mapping"]}
    small_disk.fill(leave=16 * 1024)
    started = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=alice)
    assert started.status_code == 202, started.text
    target = started.json()
    assert target["status"] == "processing"
    failed = wait_status(client, target["job_id"], alice, "failed", timeout=120)
    assert failed["error"].startswith(FULL)
    dataset = client.get(f"/api/v1/datasets/{target['id']}", headers=alice).json()
    assert dataset["status"] == "failed" and dataset["error"].startswith(FULL)
    assert not [f for f in small_disk.files() if target["id"] in f]  # no half-written split
    assert client.get("/api/v1/datasets", headers=alice).status_code == 200

    small_disk.free()
    again = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=alice)
    wait_status(client, again.json()["job_id"], alice, "succeeded", timeout=120)
    processed = client.get(f"/api/v1/datasets/{again.json()['id']}", headers=alice).json()
    assert processed["status"] == "ready" and processed["rows"] == 20_001


@pytest.mark.trains
@pytest.mark.timeout(600)
def test_a_checkpoint_that_fills_the_disk_is_not_kept_and_the_run_resumes(
    model_disk: Disk, make_client, settings
) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    dataset = processed_dataset(client, alice)
    run = spec(dataset["id"], max_steps=20, eval_every=0, checkpoint_every=5)
    job_id = start_and_reach(client, alice, run, step=1)
    model_disk.fill(leave=0)  # the next checkpoint cannot be written
    failed = wait_status(client, job_id, alice, "failed", timeout=120)
    assert failed["error"].startswith(FULL)
    assert any(line.startswith(FULL) for line in log_lines(client, job_id, alice))
    # Every checkpoint left in the store is complete: none half-written is registered.
    stored = [f for f in model_disk.files() if "/checkpoints/" in f]
    steps = {f.split("/checkpoints/")[1].split("/")[0] for f in stored}
    assert all(any(f.endswith(f"{s}/{COMPLETE_MARKER}") for f in stored) for s in steps)
    assert not [f for f in model_disk.files() if f"work/{job_id}" in f]  # no work files

    model_disk.free()
    assert client.post(f"/api/v1/jobs/{job_id}/resume", headers=alice).status_code == 200
    done = wait_status(client, job_id, alice, "succeeded", timeout=300)
    assert done["result"]["steps"] == 20


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_an_export_that_fills_the_disk_is_not_marked_done(
    model_disk: Disk, make_client, settings, tiny_adapter: Path
) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", tiny_adapter, "Support bot")
    model_disk.fill(leave=MB)
    failed = export(client, alice, model_id, format="adapter")
    assert failed["status"] == "failed" and failed["error"].startswith(FULL)
    assert not [f for f in model_disk.files() if f"/exports/{model_id}/" in f]  # no half files
    download = client.get(f"/api/v1/exports/{failed['id']}/download", headers=alice)
    assert download.status_code == 409 and "failed" in download.json()["error"]["message"]

    model_disk.free()
    done = export(client, alice, model_id, format="adapter")
    assert done["status"] == "succeeded", done["error"]
    download = client.get(f"/api/v1/exports/{done['id']}/download", headers=alice)
    assert download.status_code == 200
