"""Synthesis through the API, against a loopback OpenAI-compatible model that answers
deterministically: the dataset made from a generated manual (each row's pages checked against
the page its fact is printed on), the live view, the key read from the owner's secrets and never
shown, resume after kill -9 without generating finished chunks again, cancel, the endpoint
policy, hostile uploads, and another user's synthesis answering 404."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tests.data.test_documents import make_pdf
from tests.jobs.test_restart import worker_pid
from tests.llm_server import LlmServer
from tests.synthesis_documents import PAGE_CHUNKS, fact, fact_of, facts_in, manual, reply

pytestmark = pytest.mark.slow
KEY = "sk-loopback-7f3a"


def spec(url: str, **overrides: Any) -> dict[str, Any]:
    generator = {"kind": "endpoint", "base_url": url, "model": "writer", "concurrency": 2}
    return {
        "generator": generator | overrides.pop("generator", {}),
        "task": "qa",
        "pairs_per_chunk": 1,
        "chunking": PAGE_CHUNKS,
        **overrides,
    }


def launch(client, headers, path: Path, body: dict[str, Any], name: str = "Pump manual"):
    with path.open("rb") as file:
        return client.post(
            "/api/v1/datasets/synthesize",
            headers=headers,
            files=[("files", (path.name, file, "application/pdf"))],
            data={"spec": json.dumps(body), "name": name},
        )


def wait_dataset(client, headers, dataset_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = client.get(f"/api/v1/datasets/{dataset_id}", headers=headers).json()
        if dataset["status"] != "processing":
            return dataset
        time.sleep(0.2)
    raise AssertionError("the synthesis is still running")


def progress(client, headers, dataset_id: str) -> dict[str, Any]:
    shown = client.get(f"/api/v1/datasets/{dataset_id}/synthesis", headers=headers)
    assert shown.status_code == 200, shown.text
    return shown.json()


def wait_chunks(client, headers, dataset_id: str, done: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while progress(client, headers, dataset_id)["chunks_done"] < done:
        assert time.monotonic() < deadline, "the synthesis made no progress"
        time.sleep(0.1)


def rows(client, headers, dataset_id: str) -> list[dict[str, Any]]:
    page = client.get(
        f"/api/v1/datasets/{dataset_id}/rows", params={"limit": 200}, headers=headers
    ).json()
    assert page["total"] == len(page["rows"])
    return page["rows"]


def events_text(client, headers, job_id: str) -> str:
    return client.get(f"/api/v1/jobs/{job_id}/events", headers=headers).text


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=["127.0.0.1"])
    alice, bob = bearer(add_user(settings, "alice")), bearer(add_user(settings, "bob"))
    return client, alice, bob


def test_a_manual_becomes_a_dataset_whose_rows_name_their_pages(api, tmp_path: Path) -> None:
    client, alice, bob = api
    put = client.put("/api/v1/secrets/WRITER_KEY", headers=alice, json={"value": KEY})
    assert put.status_code == 200, put.text
    pdf = manual(tmp_path / "manual.pdf", 6)
    with LlmServer(reply=reply, api_key=KEY) as server:
        body = spec(server.url, generator={"api_key_secret": "WRITER_KEY"})
        made = launch(client, alice, pdf, body)
        assert made.status_code == 202, made.text
        dataset = made.json()
        assert dataset["status"] == "processing" and dataset["job_id"]
        assert dataset["origin"] == "synthesis" and dataset["kind"] == "raw"
        done = wait_dataset(client, alice, dataset["id"])
    assert done["status"] == "ready", done["error"]
    assert all(r["authorization"] == f"Bearer {KEY}" for r in server.requests)
    assert len(server.requests) == 6 and server.peak <= 2
    made_rows = rows(client, alice, dataset["id"])
    assert sorted(fact_of(row) for row in made_rows) == [1, 2, 3, 4, 5, 6]
    for row in made_rows:  # provenance: the page the fact is printed on, and its chunk
        assert row["document"] == "manual.pdf"
        assert list(row["pages"]) == [fact_of(row)]
        assert row["chunk_index"] == fact_of(row) - 1 and row["chunk_id"]
        assert row["question"].endswith("?")
    # Lineage: which documents, by which job.
    made_by = done["config"]["synthesis"]
    assert made_by["job_id"] == dataset["job_id"]
    assert [d["name"] for d in made_by["documents"]] == ["manual.pdf"]
    assert made_by["result"]["kept"] == 6 and made_by["result"]["chunks"] == 6
    # The live view: chunks, pairs, tokens, and the last pairs with their sources (once the
    # job's end is recorded, a moment after the dataset is ready).
    wait_status(client, dataset["job_id"], alice, "succeeded")
    shown = progress(client, alice, dataset["id"])
    assert shown["status"] == "succeeded" and shown["chunks_done"] == shown["chunks_total"] == 6
    assert shown["kept"] == 6 and shown["prompt_tokens"] > 0 and shown["completion_tokens"] > 0
    assert shown["samples"] and all("manual.pdf, page " in s["source"] for s in shown["samples"])
    job = client.get(f"/api/v1/jobs/{dataset['job_id']}", headers=alice).json()
    assert job["kind"] == "dataset_synthesis" and job["result"]["kept"] == 6
    # The key is never shown: not in the job, its events, nor the dataset.
    for text in (json.dumps(job), events_text(client, alice, job["id"]), json.dumps(done)):
        assert KEY not in text
    # Another user's synthesis is not found.
    for path in (f"/datasets/{dataset['id']}/synthesis", f"/datasets/{dataset['id']}"):
        assert client.get(f"/api/v1{path}", headers=bob).status_code == 404
    resumed = client.post(f"/api/v1/datasets/{dataset['id']}/synthesis/resume", headers=bob)
    assert resumed.status_code == 404
    # A finished synthesis cannot be resumed.
    again = client.post(f"/api/v1/datasets/{dataset['id']}/synthesis/resume", headers=alice)
    assert again.status_code == 409


@pytest.mark.timeout(300)
def test_resume_after_kill_9_does_not_generate_finished_chunks(
    api, settings, tmp_path: Path
) -> None:
    client, alice, _ = api
    pdf = manual(tmp_path / "manual.pdf", 12)
    with LlmServer(reply=reply, delay=0.4) as server:
        dataset = launch(client, alice, pdf, spec(server.url)).json()
        wait_chunks(client, alice, dataset["id"], 3)
        os.kill(worker_pid(settings, dataset["job_id"]), signal.SIGKILL)
        failed = wait_dataset(client, alice, dataset["id"])
        assert failed["status"] == "failed" and failed["error"].startswith("worker lost")
        checkpoint = settings.data_dir / "work" / dataset["job_id"] / "chunks.jsonl"
        finished = [json.loads(line) for line in checkpoint.read_text().splitlines()]
        assert len(finished) >= 3
        kept_before = {fact_of(row) for chunk in finished for row in chunk["rows"]}
        sent_before = len(server.requests)
        resumed = client.post(f"/api/v1/datasets/{dataset['id']}/synthesis/resume", headers=alice)
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "processing"
        done = wait_dataset(client, alice, dataset["id"])
        assert done["status"] == "ready", done["error"]
        after = server.requests[sent_before:]
    # No request for a chunk the killed worker had finished; every other chunk asked once.
    asked_after = [n for body in after for n in facts_in(body)]
    assert not set(asked_after) & kept_before
    assert sorted(asked_after) == sorted(set(range(1, 13)) - kept_before)
    assert sorted(fact_of(row) for row in rows(client, alice, dataset["id"])) == list(range(1, 13))
    logs = events_text(client, alice, dataset["job_id"])
    assert f"resumed with {len(finished)} chunks already finished" in logs


def test_cancel_stops_sending_and_another_machine_resumes(api, settings, tmp_path: Path) -> None:
    client, alice, _ = api
    pdf = manual(tmp_path / "manual.pdf", 16)
    with LlmServer(reply=reply, delay=0.3) as server:
        dataset = launch(client, alice, pdf, spec(server.url, generator={"concurrency": 1})).json()
        wait_chunks(client, alice, dataset["id"], 1)
        cancel = client.post(f"/api/v1/jobs/{dataset['job_id']}/cancel", headers=alice)
        assert cancel.status_code == 200, cancel.text
        ended = wait_dataset(client, alice, dataset["id"])
        sent = len(server.requests)
        time.sleep(1.0)
        assert len(server.requests) == sent < 16  # nothing more was sent
        assert ended["status"] == "failed"
        job = client.get(f"/api/v1/jobs/{dataset['job_id']}", headers=alice).json()
        assert job["status"] == "cancelled"
        asked_before = {n for body in server.requests for n in facts_in(body)}
        # Resumed by a worker on another machine: the job's working directory is not there,
        # the checkpoint's copy in the artifact store is.
        shutil.rmtree(settings.data_dir / "work" / dataset["job_id"])
        resumed = client.post(f"/api/v1/datasets/{dataset['id']}/synthesis/resume", headers=alice)
        assert resumed.status_code == 200, resumed.text
        done = wait_dataset(client, alice, dataset["id"])
        asked_after = [n for body in server.requests[sent:] for n in facts_in(body)]
    assert done["status"] == "ready", done["error"]
    assert sorted(asked_after) == sorted(set(range(1, 17)) - asked_before)
    assert sorted(fact_of(row) for row in rows(client, alice, dataset["id"])) == list(range(1, 17))


def test_refusals_at_launch(make_client, settings, tmp_path: Path) -> None:
    client = make_client(auth="local", run_jobs=False)
    alice = bearer(add_user(settings, "alice"))
    pdf = manual(tmp_path / "manual.pdf", 2)
    # The endpoint policy: a private address is refused to a non-administrator.
    private = launch(client, alice, pdf, spec("http://127.0.0.1:9/v1"))
    assert private.status_code == 422 and "private or local address" in private.text
    # A key secret that is not set.
    missing = launch(
        client, alice, pdf, spec("https://api.example.com/v1", generator={"api_key_secret": "NOPE"})
    )
    assert missing.status_code == 422 and "NOPE is not set" in missing.text
    # A spec that does not parse, and a file that is no document.
    bad = launch(client, alice, pdf, spec("https://api.example.com/v1", pairs_per_chunk=0))
    assert bad.status_code == 422 and "pairs_per_chunk" in bad.text
    png = tmp_path / "scan.pdf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    image = launch(client, alice, png, spec("https://api.example.com/v1"))
    assert image.status_code == 422 and "a PNG image" in image.text
    # Nothing was kept of the refused launches.
    assert client.get("/api/v1/datasets", headers=alice).json()["total"] == 0


def test_a_hostile_document_fails_the_job_with_the_reason(api, tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    client, alice, _ = api
    plain = make_pdf(tmp_path / "plain.pdf", [["page 1", fact(1)]])
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt("a password")
    locked = tmp_path / "locked.pdf"
    writer.write(locked)
    with LlmServer(reply=reply) as server:
        dataset = launch(client, alice, locked, spec(server.url)).json()
        failed = wait_dataset(client, alice, dataset["id"])
    assert failed["status"] == "failed" and "password" in failed["error"]
    assert server.requests == []


@pytest.mark.heavy
@pytest.mark.timeout(180)
def test_the_bundled_local_model_runs_the_pipeline(api, tmp_path: Path) -> None:
    """Gemma 3 270M (a base model) in the job's worker, on two chunks with few tokens: the
    pipeline runs end to end; what it writes is not judged."""
    client, alice, _ = api
    pdf = manual(tmp_path / "manual.pdf", 3)
    local = {
        "generator": {"kind": "local", "model": "gemma-3-270m", "max_tokens": 24},
        "pairs_per_chunk": 1,
        "chunking": PAGE_CHUNKS,
        "max_chunks": 2,
    }
    dataset = launch(client, alice, pdf, local).json()
    ended = wait_dataset(client, alice, dataset["id"], timeout=150)
    shown = progress(client, alice, dataset["id"])
    assert shown["chunks_total"] == 2 and shown["chunks_done"] == 2
    assert shown["completion_tokens"] > 0 and shown["prompt_tokens"] > 0
    if ended["status"] == "ready":  # it wrote a usable pair
        assert shown["kept"] == ended["rows"] > 0
    else:  # or none survived curation: the job says so
        assert "No pair was kept from 2 chunks" in ended["error"]
        assert sum(shown["dropped"].values()) >= 2


def test_several_documents_and_a_zip_keep_their_names(api, tmp_path: Path) -> None:
    client, alice, _ = api
    pdf = manual(tmp_path / "manual.pdf", 2)
    notes = tmp_path / "notes.pdf"  # Markdown, whatever its name says
    notes.write_text(f"# Notes\n\n{fact(7)}\n")
    bundle = tmp_path / "more.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("guide/faq.md", f"# FAQ\n\n{fact(8)}\n")
    with LlmServer(reply=reply) as server, ExitStack() as files:
        parts = [
            ("files", (path.name, files.enter_context(path.open("rb"))))
            for path in (pdf, notes, bundle)
        ]
        made = client.post(
            "/api/v1/datasets/synthesize",
            headers=alice,
            files=parts,
            data={"spec": json.dumps(spec(server.url))},
        )
        assert made.status_code == 202, made.text
        done = wait_dataset(client, alice, made.json()["id"])
    assert done["status"] == "ready", done["error"]
    assert done["name"] == "Synthesised from manual.pdf and 2 more"
    sources = {
        fact_of(r): (r["document"], list(r["pages"])) for r in rows(client, alice, done["id"])
    }
    assert sources == {
        1: ("manual.pdf", [1]),
        2: ("manual.pdf", [2]),
        7: ("notes.pdf", []),
        8: ("more.zip/guide/faq.md", []),
    }
    assert any("notes.pdf" in w and "Markdown" in w for w in done["warnings"])
    assert [d["name"] for d in done["config"]["synthesis"]["documents"]] == [
        "manual.pdf",
        "notes.pdf",
        "more.zip",
    ]


def test_a_zip_inside_a_zip_fails_the_job(api, tmp_path: Path) -> None:
    client, alice, _ = api
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("a.md", "# A\n\ntext")
    middle = io.BytesIO()
    with zipfile.ZipFile(middle, "w") as archive:
        archive.writestr("inner.zip", inner.getvalue())
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("middle.zip", middle.getvalue())
    with LlmServer(reply=reply) as server:
        dataset = launch(client, alice, nested, spec(server.url)).json()
        failed = wait_dataset(client, alice, dataset["id"])
    assert failed["status"] == "failed" and "a ZIP inside a ZIP" in failed["error"]
    assert server.requests == []


def test_the_worker_reads_the_key_again(make_client, settings, tmp_path: Path) -> None:
    """The key secret is checked at the launch and read by the worker: one deleted in between
    fails the job, saying so, before any request."""
    queued = make_client(auth="local", run_jobs=False, trusted_endpoint_hosts=["127.0.0.1"])
    alice = bearer(add_user(settings, "alice"))
    queued.put("/api/v1/secrets/WRITER_KEY", headers=alice, json={"value": KEY})
    pdf = manual(tmp_path / "manual.pdf", 2)
    with LlmServer(reply=reply, api_key=KEY) as server:
        body = spec(server.url, generator={"api_key_secret": "WRITER_KEY"})
        dataset = launch(queued, alice, pdf, body).json()
        assert queued.delete("/api/v1/secrets/WRITER_KEY", headers=alice).status_code == 204
        runner = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=["127.0.0.1"])
        failed = wait_dataset(runner, alice, dataset["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == "The generator's key secret WRITER_KEY was deleted; set it again."
    assert server.requests == []
