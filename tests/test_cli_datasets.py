"""`tuneforge datasets` against a real server: upload, list, show, rows, process (at once and in a
job, with a YAML or JSON config), and the errors a user meets, each as one line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import add_user
from tests.server import free_port, running_server, server_env
from tests.test_client_datasets import QA, write_csv, write_messages
from tuneforge.cli import app
from tuneforge.services.datasets import SYNC_ROWS
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface

runner = CliRunner()
Invoke = Callable[..., Result]


@pytest.fixture
def cli(make_settings: Callable[..., Settings]) -> Iterator[tuple[Invoke, str]]:
    """Runs `tuneforge datasets ...` (or another `group`) as ada (an administrator) against a
    server, asserting exit code `code`; also yields bob's token."""
    settings = make_settings()
    ada, bob = add_user(settings, "ada", admin=True), add_user(settings, "bob")
    with running_server(server_env(settings)) as url:

        def invoke(*args: str, code: int = 0, token: str = ada, group: str = "datasets") -> Result:
            env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": token}
            result = runner.invoke(app, [group, *args], env=env)
            assert result.exit_code == code, (args, result.output)
            assert "Traceback" not in result.output
            return result

        yield invoke, bob


def fields(output: str) -> dict[str, str]:
    """The `key  value` lines of a summary (up to the first empty line)."""
    summary = output.split("\n\n", 1)[0].splitlines()
    pairs = (line.split(maxsplit=1) for line in summary if line[:1].isalpha())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def test_upload_list_show_rows_and_process(cli: tuple[Invoke, str], tmp_path: Path) -> None:
    invoke, bob = cli
    sums = write_csv(tmp_path / "sums.csv", [*QA, QA[0], ("", "nothing")])
    uploaded = invoke("upload", str(sums))
    summary = fields(uploaded.stdout)
    raw_id = summary["id"]
    assert summary["format"] == "question_answer"
    assert summary["rows"] == "32 (train 32)"
    assert summary["columns"] == "question (string), answer (string)"
    assert summary["mapping"] == "conversation (fields): user=question, assistant=answer"
    assert uploaded.stdout.splitlines()[-1] == f"Next: tuneforge datasets process {raw_id}"

    chat = json.loads(
        invoke("upload", str(write_messages(tmp_path / "c.jsonl", QA[:2])), "--json").stdout
    )
    assert (chat["format"], chat["rows"], chat["mapping"]["layout"]) == ("messages", 2, "messages")
    (tmp_path / "reviews.csv").write_text("review,sentiment\nGreat film.,positive\n")
    guessed = invoke("upload", str(tmp_path / "reviews.csv"), "--name", "my reviews")
    assert fields(guessed.stdout)["name"] == "my reviews"
    assert "warning: a guess: `review` as the prompt, `sentiment` as the answer" in guessed.stdout
    (tmp_path / "numbers.csv").write_text("n\n1\n2\n")
    numbers = fields(invoke("upload", str(tmp_path / "numbers.csv")).stdout)
    assert numbers["mapping"].startswith("none (the format was not recognised")

    table = invoke("list").stdout.splitlines()
    header, *rows, total = table
    assert header.split() == ["ID", "KIND", "STATUS", "FORMAT", "ROWS", "CREATED", "NAME"]
    assert [row.split()[:5] for row in rows] == [
        [numbers["id"], "raw", "ready", "-", "2"],
        [fields(guessed.stdout)["id"], "raw", "ready", "-", "1"],
        [chat["id"], "raw", "ready", "messages", "2"],
        [raw_id, "raw", "ready", "question_answer", "32"],
    ]
    assert {row.index("raw") for row in rows} == {header.index("KIND")}
    assert rows[1].endswith("my reviews") and total == "4 of 4 datasets"

    shown = invoke("show", raw_id).stdout
    assert fields(shown)["status"] == "ready"
    assert "0  What is 0 plus 0?  0" in shown.splitlines()
    assert shown.splitlines()[-1] == "rows 0-4 of 32 (train); next: --offset 5"

    page = invoke("rows", raw_id, "--offset", "29", "--limit", "5").stdout.splitlines()
    assert page[0].split() == ["#", "question", "answer"]
    assert [line.split()[0] for line in page[1:-1]] == ["29", "30", "31"]
    assert page[-2].split() == ["31", "nothing"] and page[-1] == "rows 29-31 of 32 (train)"
    as_json = json.loads(invoke("rows", chat["id"], "--limit", "1", "--json").stdout)
    assert as_json["total"] == 2 and as_json["rows"][0]["messages"][0]["role"] == "user"

    # The proposed mapping by default; the report counts the duplicate (kept) and the empty
    # prompt (dropped).
    processed = invoke("process", raw_id, "--test-size", "6", "--name", "sums").stdout.splitlines()
    processed_id = processed[0].split()[1]
    assert processed == [
        f"Dataset {processed_id} (sums) is ready with 31 rows: train 25, test 6.",
        "rows in 32, out 31, dropped 1 (policy: drop)",
        "  duplicate    1  An exact duplicate of an earlier example.",
        "  empty_field  1  A field is empty or only whitespace.",
    ]
    shown = invoke("show", processed_id, "--limit", "2").stdout
    assert fields(shown)["kind"] == "processed" and fields(shown)["source"] == raw_id
    assert "rows in 32, out 31, dropped 1 (policy: drop)" in shown
    first = shown.splitlines()[-3]
    assert first.startswith("0  user: What is ") and " | assistant: " in first
    assert invoke("rows", processed_id, "--split", "test").stdout.endswith("of 6 (test)\n")

    # A YAML config with a template; the fail policy refuses the duplicate (exit 1).
    config = tmp_path / "strict.yaml"
    config.write_text(
        "# prompts from a template; refuse data with problems\n"
        "mapping:\n"
        "  user: {template: 'Add: {question}'}\n"
        "  assistant: {column: answer}\n"
        "split: {mode: none}\n"
        "on_problem: fail\n"
        "drop_duplicates: true\n"
    )
    refused = invoke("process", raw_id, "--config", str(config), code=1).stdout.splitlines()
    assert refused[0].endswith("is failed.")
    assert refused[1:3] == [
        "rows in 32, out 31, dropped 1 (policy: fail)",
        "  duplicate  1  An exact duplicate of an earlier example.",
    ]
    assert refused[-1].startswith("error: 1 of 32 rows have problems")

    # A JSON config (without a mapping: the proposed one), overridden by the options.
    (tmp_path / "c.json").write_text(json.dumps({"split": {"mode": "none"}, "max_length": 64}))
    overridden = (
        "process",
        chat["id"],
        "--config",
        str(tmp_path / "c.json"),
        "--max-length",
        "512",
    )
    result = json.loads(invoke(*overridden, "--json").stdout)
    assert result["dataset"]["status"] == "ready" and result["dataset"]["splits"] == {"train": 2}
    assert result["dataset"]["config"]["max_length"] == 512
    assert result["report"]["rows_out"] == 2 and result["report"]["problems"] == []
    kinds = json.loads(invoke("list", "--kind", "processed", "--json").stdout)
    assert kinds["total"] == 3 and {d["kind"] for d in kinds["items"]} == {"processed"}

    # Errors: the server's message on one line, exit 1.
    errors: dict[tuple[str, ...], str] = {
        ("show", "no-such-dataset"): "No dataset no-such-dataset.",
        ("rows", raw_id, "--split", "nope"): "This dataset has no split 'nope'; it has train.",
        ("process", processed_id): "This dataset is already processed; process its raw source",
        ("process", numbers["id"]): f"No mapping was proposed for dataset {numbers['id']}",
        ("process", raw_id, "--test-size", "0"): "split.test_size: Input should be greater than 0",
        ("process", raw_id, "--config", str(sums)): f"The processing config {sums} is not valid",
    }
    for args, message in errors.items():
        failed = invoke(*args, code=1)
        assert message in failed.stderr, (args, failed.stderr)
        assert len(failed.stderr.strip().splitlines()) == 1 and failed.stdout == ""
    for command in ("show", "rows", "delete"):  # bob's view of ada's dataset
        assert invoke(command, raw_id, code=1, token=bob).stderr.strip() == f"No dataset {raw_id}."

    assert invoke("delete", processed_id).stdout.strip() == f"Deleted dataset {processed_id}."
    assert invoke("show", processed_id, code=1).stderr.strip() == f"No dataset {processed_id}."


def test_large_data_and_imports_run_in_jobs(cli: tuple[Invoke, str], tmp_path: Path) -> None:
    invoke, bob = cli
    rows = [(f"q{i}", f"a{i}") for i in range(SYNC_ROWS + 1)]
    raw = json.loads(
        invoke("upload", str(write_csv(tmp_path / "large.csv", rows)), "--json").stdout
    )

    followed = invoke("process", raw["id"]).stdout.splitlines()
    processed_id, job_id = followed[0].split()[1], followed[0].split()[-1].rstrip(":")
    assert followed[0] == f"Dataset {processed_id} is processing in job {job_id}:"
    assert followed[1] == f"[info]     processing {SYNC_ROWS + 1:,} rows of 'large.csv'"
    assert "[100%]     processing rows" in followed
    assert followed[-2] == (
        f"Dataset {processed_id} (large.csv (processed)) is ready with 20,001 rows: "
        "train 18,001, test 2,000."
    )
    assert followed[-1] == "rows in 20,001, out 20,001, dropped 0 (policy: drop)"

    # Without waiting: the dataset as it is now, and how to follow its job.
    started = invoke("process", raw["id"], "--no-wait", "--json")
    dataset = json.loads(started.stdout)["dataset"]
    assert dataset["status"] == "processing" and dataset["job_id"]
    assert (
        started.stderr.strip() == f"Follow its job with `tuneforge jobs watch {dataset['job_id']}`."
    )
    assert fields(invoke("show", dataset["id"]).stdout)["job"] == dataset["job_id"]
    busy = invoke("process", dataset["id"], code=1).stderr.strip()
    assert busy == f"Dataset {dataset['id']} is processing; it can be processed once ready."
    watched = invoke("watch", dataset["job_id"], group="jobs").stdout.splitlines()
    assert watched[-1] == f"Job {dataset['job_id']} succeeded."
    done = fields(invoke("show", dataset["id"]).stdout)
    assert (done["status"], done["rows"]) == ("ready", "20,001 (train 18,001, test 2,000)")

    # Importing a file on the server (administrators only) runs in a job too.
    sums = write_csv(tmp_path / "sums.csv", QA)
    imported = invoke("import", str(sums), "--source", "server_path", "--name", "on the server")
    lines = imported.stdout.splitlines()
    assert lines[1:3] == [
        f"[info]     importing {str(sums)!r}",
        "[info]     imported 30 rows in 1 split(s)",
    ]
    summary = fields(imported.stdout)
    assert (summary["name"], summary["status"], summary["format"]) == (
        "on the server",
        "ready",
        "question_answer",
    )
    assert summary["origin"] == f"server_path: {sums}" and summary["rows"] == "30 (train 30)"
    missing = invoke("import", str(tmp_path / "none.csv"), "--source", "server_path", code=1)
    assert "There is no file or directory" in missing.stderr and "none.csv" in missing.stderr
    refused = invoke("import", str(sums), "--source", "server_path", code=1, token=bob)
    assert refused.stderr.strip() == "Only administrators can import from a path on the server."
    bad = invoke("import", "not a dataset id", code=1)
    assert "is not a Hugging Face dataset id" in bad.stderr


def test_without_a_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["datasets", "--url", url, "list"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"The TuneForge server is not reachable at {url}."
