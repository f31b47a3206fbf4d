"""Synthesis from the Python client and `tuneforge datasets synthesize` against a real server and
a loopback model: the job followed with the pairs printed as they are made, the live view, the
JSON output, resume refused for a finished synthesis, and the errors a user meets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import add_user
from tests.llm_server import LlmServer
from tests.server import running_server, server_env
from tests.synthesis_documents import PAGE_CHUNKS, fact_of, manual, reply
from tuneforge.cli import app
from tuneforge.cli_synthesis import build_spec
from tuneforge.client import ApiError, Client
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface
runner = CliRunner()


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, str, str]]:
    settings = make_settings(trusted_endpoint_hosts=["127.0.0.1"])
    ada, bob = add_user(settings, "ada"), add_user(settings, "bob")
    with running_server(server_env(settings)) as url:
        yield url, ada, bob


def test_client_and_cli_make_a_dataset_from_a_manual(
    server: tuple[str, str, str], tmp_path: Path
) -> None:
    url, ada, bob = server
    pdf = manual(tmp_path / "manual.pdf", 3)
    chunking = tmp_path / "spec.yaml"
    chunking.write_text(
        "chunking:\n"
        + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in PAGE_CHUNKS.items())
        + "curation:\n  near_duplicate_similarity: 0.9\n"
    )
    with LlmServer(reply=reply) as model:
        with Client(url, ada) as tf:
            spec = {
                "generator": {"kind": "endpoint", "base_url": model.url, "model": "writer"},
                "pairs_per_chunk": 1,
                "chunking": PAGE_CHUNKS,
            }
            made = tf.wait_dataset(tf.synthesize([pdf], spec, name="from the client").id)
            assert made.status == "ready" and made.rows == 3, made.error
            shown = tf.synthesis_progress(made.id)
            assert shown.chunks_done == 3 and shown.kept == 3 and shown.samples
            rows = tf.dataset_rows(made.id).rows
            assert sorted(fact_of(r) for r in rows) == [1, 2, 3]
            assert all(list(r["pages"]) == [fact_of(r)] for r in rows)
            with Client(url, bob) as other, pytest.raises(ApiError) as foreign:
                other.synthesis_progress(made.id)
            assert foreign.value.status == 404
            with pytest.raises(ApiError) as finished:
                tf.resume_synthesis(made.id)
            assert finished.value.status == 409

        env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": ada}
        args = ["datasets", "synthesize", str(pdf), "--endpoint", model.url, "--model", "writer"]
        args += ["--pairs-per-chunk", "1", "--config", str(chunking), "--name", "from the CLI"]
        followed = runner.invoke(app, args, env=env)
        assert followed.exit_code == 0, followed.output
        assert "  Q: What does the" in followed.output and "(manual.pdf, page " in followed.output
        assert "is ready with 3 rows" in followed.output
        assert "3 of 3 chunks; 3 pairs kept" in followed.output
        as_json = runner.invoke(app, [*args, "--json"], env=env)
        assert as_json.exit_code == 0, as_json.output
        dataset = json.loads(as_json.stdout)
        assert (dataset["status"], dataset["origin"], dataset["rows"]) == ("ready", "synthesis", 3)
    assert len(model.requests) == 9  # 3 chunks, three times

    no_model = runner.invoke(app, ["datasets", "synthesize", str(pdf)], env=env)
    assert no_model.exit_code == 1 and "--endpoint URL --model NAME" in no_model.output
    refused = runner.invoke(
        app,
        ["datasets", "synthesize", str(pdf), "--local-model", "no-such-model"],
        env=env,
    )
    assert refused.exit_code == 1 and "No model 'no-such-model'" in refused.output


def test_options_override_the_config() -> None:
    spec = build_spec(
        {"generator": {"kind": "endpoint", "base_url": "http://a/v1", "model": "m"}, "seed": 1},
        endpoint=None,
        model="other",
        api_key_secret="KEY",
        local_model=None,
        concurrency=8,
        options={"task": "summaries", "pairs_per_chunk": None},
    )
    assert spec == {
        "generator": {
            "kind": "endpoint",
            "base_url": "http://a/v1",
            "model": "other",
            "api_key_secret": "KEY",
            "concurrency": 8,
        },
        "seed": 1,
        "task": "summaries",
    }
    local = build_spec(
        {},
        endpoint=None,
        model=None,
        api_key_secret=None,
        local_model="gemma-3-270m",
        concurrency=None,
        options={},
    )
    assert local == {"generator": {"kind": "local", "model": "gemma-3-270m"}}
