"""`tuneforge datasets augment` with the LLM methods against a real server and a loopback
OpenAI-compatible model: the generator options, the preview's LLM requests and cost, the job,
and the mistakes a user can make with the options."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import add_user
from tests.llm_server import LlmServer
from tests.server import running_server, server_env
from tests.test_client_datasets import write_csv
from tuneforge.cli import app
from tuneforge.cli_augment import parse_method
from tuneforge.client import Client
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface
runner = CliRunner()
ROWS = [(f"Which small birds visit a winter feeder in town number {i}?", "Tits.") for i in range(6)]


def reworded(body: dict[str, Any]) -> str:
    prompt = body["messages"][-1]["content"]
    text = prompt.split("Text:\n", 1)[1]
    return f"<{text}>" if "into German" in prompt else "~" + text.strip("<>").upper()


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, str]]:
    settings = make_settings(trusted_endpoint_hosts=["127.0.0.1"])
    ada = add_user(settings, "ada")
    with running_server(server_env(settings)) as url:
        yield url, ada


def test_cli_previews_and_makes_a_back_translated_dataset(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, ada = server
    with Client(url, ada) as tf:
        raw = tf.upload_dataset(write_csv(tmp_path / "birds.csv", ROWS))
        source = tf.process_dataset(
            raw.id, {"mapping": raw.mapping, "split": {"mode": "manual", "test_size": 2}}
        )
    env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": ada}
    with LlmServer(reply=reworded) as llm:
        options = [
            "datasets",
            "augment",
            source.id,
            "-m",
            "back_translation:German",
            "--generator-url",
            llm.url,
            "--generator-model",
            "m",
            "--generator-concurrency",
            "2",
        ]
        preview = runner.invoke(
            app, [*options, "--preview", "--rows", "2", "--price", "1.5"], env=env
        )
        assert preview.exit_code == 0, preview.output
        assert "↳ back_translation" in preview.output and "~WHICH SMALL BIRDS" in preview.output
        assert "LLM: about 8 requests" in preview.output  # 2 per train row
        assert "at 1.5 per 1k tokens" in preview.output
        assert len(llm.requests) == 4
        made = runner.invoke(app, [*options, "--json"], env=env)
    assert made.exit_code == 0, made.output
    dataset = json.loads(made.stdout)
    assert dataset["status"] == "ready" and dataset["splits"] == {"train": 8, "test": 2}
    generator = dataset["config"]["augmentation"]["spec"]["methods"][0]["generator"]
    assert generator == {
        "kind": "endpoint",
        "base_url": llm.url,
        "model": "m",
        "api_key_secret": None,
        "concurrency": 2,
        "temperature": 0.7,
        "max_tokens": 512,
    }
    assert len(llm.requests) == 4 + 8


def test_llm_options_are_checked(server: tuple[str, str]) -> None:
    url, ada = server
    env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": ada}
    no_model = runner.invoke(app, ["datasets", "augment", "x", "-m", "paraphrase"], env=env)
    assert no_model.exit_code == 1 and "asks a language model" in no_model.output
    no_name = runner.invoke(
        app,
        ["datasets", "augment", "x", "-m", "paraphrase", "--generator-url", "http://h/v1"],
        env=env,
    )
    assert no_name.exit_code == 1 and "needs --generator-model" in no_name.output
    assert parse_method("paraphrase:0.5") == {"name": "paraphrase", "probability": 0.5}
    assert parse_method("back_translation:German") == {
        "name": "back_translation",
        "language": "German",
    }
