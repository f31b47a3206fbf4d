"""`tuneforge evals` and the client's evaluation methods against a real server and its workers,
with tiny-random-gemma3: start and follow, show, browse, filter and download."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import add_user
from tests.server import running_server, server_env
from tests.test_client_datasets import QA, write_messages
from tuneforge.cli import app
from tuneforge.client import ApiError, Client
from tuneforge.settings import Settings

runner = CliRunner()
TINY = "tiny-random-gemma3"


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, str]]:
    settings = make_settings()
    token = add_user(settings, "ada")
    with running_server(server_env(settings)) as url:
        yield url, token


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_evals_start_show_samples_and_download(server: tuple[str, str], tmp_path: Path) -> None:
    url, token = server
    with Client(url, token) as tf:
        raw = tf.upload_dataset(write_messages(tmp_path / "sums.jsonl", QA[:12]))
        config = {"mapping": raw.mapping, "split": {"test_size": 4, "seed": 0}}
        dataset = tf.process_dataset(raw.id, config)
    env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": token}

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["evals", *args], env=env)
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output
        return result.output

    started = invoke(
        "start", "--model", TINY, "--dataset", dataset.id, "--suite", "perplexity"
    ).splitlines()
    eval_id = started[0].split()[1]
    assert started[0] == f"Evaluation {eval_id} queued."
    assert any(line.startswith("[100%]") and "model A: 4/4" in line for line in started)
    assert f"perplexity on the test split of {dataset.id}: 4 samples" in started
    header = next(i for i, line in enumerate(started) if line.startswith("METRIC"))
    assert started[header].split()[1:] == ["A", "Tiny", "random", "Gemma", "3", "(tests)"]
    assert [line.split()[0] for line in started[header + 1 :]] == [
        "perplexity",
        "nll",
        "token_accuracy",
    ]

    shown = json.loads(invoke("show", eval_id, "--json"))
    assert shown["count"] == 4 and shown["metrics"][0]["perplexity"] > 1
    browsed = invoke("samples", eval_id, "--limit", "2").splitlines()
    assert browsed[-1] == "2 of 4 samples"
    assert browsed[0].startswith("#") and browsed[1].startswith("    reference: ")
    assert browsed[2].startswith("    A: (nll ")
    refused = invoke("samples", eval_id, "--filter", "both_wrong", code=1)
    assert "no right or wrong answers" in refused

    saved = invoke("download", eval_id, "--format", "jsonl", "--output", str(tmp_path / "s.jsonl"))
    assert saved.strip() == f"Saved {tmp_path / 's.jsonl'}"
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]

    # The client: the same samples; a vibe check, its answers as CSV, and the errors of an
    # unfinished evaluation and of a missing one.
    with Client(url, token) as tf:
        assert [s.model_dump() for s in tf.evaluation_samples(eval_id).items] == rows
        spec = {"model": TINY, "dataset_id": dataset.id, "suite": "vibe", "max_new_tokens": 5}
        job = tf.evaluate(spec)
        with pytest.raises(ApiError) as running:
            tf.evaluation(job.id)
        assert running.value.status == 409
        assert tf.wait(job.id, timeout=300).status == "succeeded"
        result = tf.evaluation(job.id)
        assert (result.suite, result.metrics, result.difference) == ("vibe", [{}], None)
        page = tf.evaluation_samples(job.id, offset=1, limit=2)
        assert page.total == 4 and len(page.items) == 2 and set(page.items[0].answers) == {"A"}
        path = tf.download_evaluation(job.id, "csv", tmp_path / "vibe.csv")
        lines = list(csv.DictReader(path.open(encoding="utf-8")))
        assert list(lines[0]) == ["index", "prompt", "reference", "answer_a"]
        assert [line["answer_a"] for line in lines[1:3]] == [s.answers["A"] for s in page.items]
        with pytest.raises(ApiError) as foreign:
            tf.evaluation("0" * 32)
        assert foreign.value.status == 404


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_evals_start_takes_graders_for_the_rewards_suite(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, token = server
    with Client(url, token) as tf:
        raw = tf.upload_dataset(write_messages(tmp_path / "sums.jsonl", QA[:12]))
        config = {"mapping": raw.mapping, "split": {"test_size": 4, "seed": 0}}
        dataset = tf.process_dataset(raw.id, config)
    env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": token}
    common = ["evals", "start", "--model", TINY, "--dataset", dataset.id, "--suite", "rewards"]
    short = {"type": "length", "unit": "words", "maximum": 1000, "name": "short"}
    result = runner.invoke(
        app, [*common, "--graders", json.dumps(short), "--max-new-tokens", "4"], env=env
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line}
    assert rows["reward"] == ["1"] and rows["reward/short"] == ["1"], result.output
    refused = runner.invoke(app, [*common, "--graders", "short"], env=env)
    assert refused.exit_code == 1
    assert "--graders: each value must be a JSON object" in refused.stderr
