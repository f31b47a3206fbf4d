"""The Python client's dataset methods against a real server process: upload (streamed), list,
rows, preview, processing at once (201) and in a job (202, then `wait_dataset`), and errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import add_user
from tests.server import running_server, server_env
from tuneforge.client import ApiError, Client
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.mapping import FieldSource, MappingSpec
from tuneforge.data.splits import SplitSpec
from tuneforge.services.datasets import SYNC_ROWS
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface

QA = [(f"What is {i} plus {i}?", str(2 * i)) for i in range(30)]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text(
        "question,answer\n" + "".join(f'"{q}","{a}"\n' for q, a in rows), encoding="utf-8"
    )
    return path


def write_messages(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in rows
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, str, str]]:
    """A server with two users; yields its URL and the tokens of ada (an administrator) and
    bob."""
    settings = make_settings()
    ada, bob = add_user(settings, "ada", admin=True), add_user(settings, "bob")
    with running_server(server_env(settings)) as url:
        yield url, ada, bob


def test_upload_page_preview_process_and_report(
    server: tuple[str, str, str], tmp_path: Path
) -> None:
    url, ada, bob = server
    rows = [*QA, QA[0], ("", "nothing")]  # a duplicate and an empty prompt
    with Client(url, ada) as tf:
        raw = tf.upload_dataset(write_csv(tmp_path / "sums.csv", rows), name="sums")
        assert (raw.kind, raw.status, raw.name, raw.format) == (
            "raw",
            "ready",
            "sums",
            "question_answer",
        )
        assert raw.rows == 32 and raw.splits == {"train": 32}
        assert [c.name for c in raw.columns] == ["question", "answer"]
        assert raw.mapping is not None and raw.mapping["user"] == {"column": "question"}

        chat = tf.upload_dataset(str(write_messages(tmp_path / "chat.jsonl", QA[:3])))
        assert (chat.format, chat.rows, chat.name) == ("messages", 3, "chat.jsonl")
        assert chat.mapping == {
            "mode": "conversation",
            "layout": "messages",
            "messages_column": "messages",
        }

        listed = tf.list_datasets()
        assert listed.total == 2 and [d.id for d in listed.items] == [chat.id, raw.id]
        assert tf.list_datasets(kind="processed").total == 0
        assert [d.id for d in tf.list_datasets(offset=1, limit=1).items] == [raw.id]
        assert tf.get_dataset(raw.id).model_dump() == raw.model_dump()

        page = tf.dataset_rows(raw.id, offset=29, limit=5)
        assert (page.split, page.offset, page.total) == ("train", 29, 32)
        assert [r["answer"] for r in page.rows] == ["58", "0", "nothing"]
        assert tf.dataset_rows(chat.id, split="train", limit=1).rows[0]["messages"][1] == {
            "role": "assistant",
            "content": "0",
        }

        # The mapping as a dict or as a model: the same preview, in Gemma's chat format.
        preview = tf.preview_mapping(chat.id, chat.mapping)
        assert preview[0]["rendered"] == (
            "<bos><start_of_turn>user\nWhat is 0 plus 0?<end_of_turn>\n"
            "<start_of_turn>model\n0<end_of_turn>\n"
        )
        assert [p["problems"] for p in preview] == [[], [], []]
        spec = MappingSpec(
            user=FieldSource(template="Add: {question}"), assistant=FieldSource(column="answer")
        )
        shown = tf.preview_mapping(raw.id, spec)
        assert shown[1]["rendered"].startswith("<bos><start_of_turn>user\nAdd: What is 1 plus 1?")
        assert len(shown) == 3

        # Small data is processed at once (201); the report counts the two bad rows.
        proposed = MappingSpec.model_validate(raw.mapping)
        config = ProcessingConfig(
            name="sums", mapping=proposed, split=SplitSpec(test_size=6), drop_duplicates=True
        )
        processed = tf.process_dataset(raw.id, config)
        assert (processed.kind, processed.status, processed.job_id) == ("processed", "ready", None)
        assert processed.source_id == raw.id and processed.name == "sums"
        assert processed.splits == {"train": 24, "test": 6}
        assert tf.wait_dataset(processed.id).model_dump() == processed.model_dump()
        report = tf.dataset_report(processed.id)
        assert (report.rows_in, report.rows_out, report.dropped) == (32, 30, 2)
        assert {p.code: p.count for p in report.problems} == {"duplicate": 1, "empty_field": 1}
        stats = tf.dataset_stats(processed.id)
        assert stats["rows"] == {"train": 24, "test": 6}
        test_rows = tf.dataset_rows(processed.id, split="test", limit=10)
        assert test_rows.total == 6
        question, answer = test_rows.rows[0]["messages"]
        assert question["role"] == "user" and answer["role"] == "assistant"
        assert dict(QA)[question["content"][0]["text"]] == answer["content"][0]["text"]

        # A dict config; the fail policy refuses the data (still 201, status failed): the
        # empty prompt, not the duplicate, which is kept by default.
        refused = tf.process_dataset(raw.id, {"mapping": raw.mapping, "on_problem": "fail"})
        assert refused.status == "failed" and "1 of 32 rows" in (refused.error or "")
        assert tf.list_datasets(kind="processed").total == 2

        with pytest.raises(ApiError) as no_report:
            tf.dataset_report(raw.id)
        assert no_report.value.status == 404 and "validation report" in no_report.value.message
        with pytest.raises(ApiError) as bad_mapping:
            tf.preview_mapping(
                raw.id, {"user": {"column": "nope"}, "assistant": {"column": "answer"}}
            )
        assert bad_mapping.value.status == 422 and "nope" in bad_mapping.value.message
        with pytest.raises(ApiError) as again:
            tf.process_dataset(processed.id, {"mapping": raw.mapping})
        assert again.value.status == 409 and again.value.code == "conflict"

        # Another user's dataset is missing to bob, exactly like an unknown id.
        with Client(url, bob) as other:
            for dataset_id in (raw.id, "no-such-dataset"):
                with pytest.raises(ApiError) as missing:
                    other.get_dataset(dataset_id)
                assert (missing.value.status, missing.value.code) == (404, "not_found")
                assert missing.value.message == f"No dataset {dataset_id}."
            with pytest.raises(ApiError):
                other.delete_dataset(raw.id)
            assert other.list_datasets().total == 0

        tf.delete_dataset(processed.id)
        with pytest.raises(ApiError) as deleted:
            tf.get_dataset(processed.id)
        assert deleted.value.status == 404


def test_large_data_and_imports_run_in_jobs(server: tuple[str, str, str], tmp_path: Path) -> None:
    url, ada, bob = server
    rows = [(f"q{i}", f"a{i}") for i in range(SYNC_ROWS + 1)]
    with Client(url, ada) as tf:
        raw = tf.upload_dataset(write_csv(tmp_path / "large.csv", rows))
        assert raw.rows == SYNC_ROWS + 1 and raw.mapping is not None
        started = tf.process_dataset(raw.id, {"mapping": raw.mapping, "split": {"test_size": 0.1}})
        assert started.status == "processing" and started.job_id is not None
        assert tf.get_job(started.job_id).kind == "dataset_process"

        done = tf.wait_dataset(started.id, timeout=120)
        assert (done.id, done.status, done.error) == (started.id, "ready", None)
        assert done.rows == SYNC_ROWS + 1 and sum(done.splits.values()) == done.rows
        assert done.splits["test"] == round(0.1 * done.rows)
        assert tf.get_job(started.job_id).status == "succeeded"
        report = tf.dataset_report(done.id)
        assert (report.rows_in, report.rows_out, report.dropped, report.problems) == (
            SYNC_ROWS + 1,
            SYNC_ROWS + 1,
            0,
            [],
        )

        # A file on the server (administrators only), read in a job.
        csv = write_csv(tmp_path / "sums.csv", QA)
        started = tf.import_dataset(str(csv), "server_path", name="from the server")
        assert (started.status, started.origin, started.rows) == ("processing", "server_path", 0)
        assert started.job_id is not None and started.name == "from the server"
        imported = tf.wait_dataset(started.id, timeout=60)
        assert (imported.status, imported.rows, imported.format) == ("ready", 30, "question_answer")
        assert imported.mapping == raw.mapping and imported.origin_ref == str(csv)
        assert tf.get_job(started.job_id).status == "succeeded"
        with pytest.raises(ApiError) as missing:
            tf.import_dataset(str(tmp_path / "none.csv"), "server_path")
        assert missing.value.status == 422 and "none.csv" in missing.value.message
        with pytest.raises(ApiError) as bad_id:
            tf.import_dataset("not a dataset id")
        assert bad_id.value.status == 422 and "Hugging Face dataset id" in bad_id.value.message
    with Client(url, bob) as other, pytest.raises(ApiError) as refused:
        other.import_dataset(str(csv), "server_path")
    assert refused.value.status == 403


class _Recorder(httpx.BaseTransport):
    """Reads the request body as the network would (chunk by chunk) and refuses the upload."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        with pytest.raises(httpx.RequestNotRead):
            _ = request.content  # a streamed body, not bytes built in memory
        assert isinstance(request.stream, httpx.SyncByteStream)
        self.chunks = list(request.stream)
        error = {"code": "invalid_input", "message": "Not today.", "details": {}}
        return httpx.Response(400, json={"error": error})


def test_upload_streams_the_file_from_disk(tmp_path: Path) -> None:
    data = b"question,answer\n" + b"q,a\n" * 50_000
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    transport = _Recorder()
    with (
        Client("http://tuneforge.test", "tf_x", transport=transport) as tf,
        pytest.raises(ApiError) as refused,
    ):
        tf.upload_dataset(path, name="big one")
    assert (refused.value.status, refused.value.code, str(refused.value)) == (
        400,
        "invalid_input",
        "Not today.",
    )
    (request,) = transport.requests
    assert request.url.path == "/api/v1/datasets"
    body = b"".join(transport.chunks)
    assert int(request.headers["content-length"]) == len(body)
    assert b'name="file"; filename="big.csv"' in body and data in body
    assert b'name="name"\r\n\r\nbig one\r\n' in body
    assert max(len(chunk) for chunk in transport.chunks) <= 64 * 1024 < len(data)
