"""Augmentation from the Python client and `tuneforge datasets augment` against a real server:
the preview (text and JSON), the job made and followed, and the errors a user meets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import add_user
from tests.server import running_server, server_env
from tests.test_client_datasets import write_csv
from tuneforge.cli import app
from tuneforge.cli_augment import parse_method
from tuneforge.client import ApiError, Client
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface
runner = CliRunner()
ROWS = [
    (f"Which tall green trees grow well beside a quiet river in region {i}?", "Willows.")
    for i in range(8)
]


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, str, str]]:
    settings = make_settings()
    ada, bob = add_user(settings, "ada"), add_user(settings, "bob")
    with running_server(server_env(settings)) as url:
        yield url, ada, bob


def test_client_and_cli_preview_and_augment(server: tuple[str, str, str], tmp_path: Path) -> None:
    url, ada, bob = server
    with Client(url, ada) as tf:
        raw = tf.upload_dataset(write_csv(tmp_path / "trees.csv", ROWS))
        source = tf.process_dataset(
            raw.id, {"mapping": raw.mapping, "split": {"mode": "manual", "test_size": 2}}
        )
        assert source.splits == {"train": 6, "test": 2}
        spec = {"methods": [{"name": "swap", "rate": 0.2}], "copies": 2, "seed": 4}
        shown = tf.preview_augmentation(source.id, spec, count=2)
        assert len(shown.examples) == 2 and shown.rows_in == 6 and shown.cost.money == 0
        assert all(example.variants for example in shown.examples)
        with Client(url, bob) as other, pytest.raises(ApiError) as foreign:
            other.preview_augmentation(source.id, spec)
        assert foreign.value.status == 404

    env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": ada}
    preview = runner.invoke(
        app,
        [
            "datasets",
            "augment",
            source.id,
            "-m",
            "swap:0.2",
            "--copies",
            "2",
            "--seed",
            "4",
            "--preview",
            "--rows",
            "2",
        ],
        env=env,
    )
    assert preview.exit_code == 0, preview.output
    assert "── row 0" in preview.output and "↳ swap" in preview.output
    assert "Train rows: 6 → about" in preview.output and "Cost: 0 USD" in preview.output

    made = runner.invoke(
        app,
        [
            "datasets",
            "augment",
            source.id,
            "-m",
            "swap:0.2",
            "--copies",
            "2",
            "--seed",
            "4",
            "--name",
            "more trees",
            "--json",
        ],
        env=env,
    )
    assert made.exit_code == 0, made.output
    dataset = json.loads(made.stdout)
    assert (dataset["status"], dataset["name"], dataset["origin"]) == (
        "ready",
        "more trees",
        "augmentation",
    )
    assert dataset["splits"]["test"] == 2 and dataset["splits"]["train"] > 6
    with Client(url, ada) as tf:
        train = tf.dataset_rows(dataset["id"], "train", limit=50).rows
    # The CLI's job made what the client's preview showed.
    assert [r["augmented_from"] for r in train[6:] if r["augmented_from"] in (0, 1)] == [
        e.row for e in shown.examples for _ in e.variants
    ]

    missing = runner.invoke(app, ["datasets", "augment", source.id], env=env)
    assert missing.exit_code == 1 and "at least one method" in missing.output
    raw_refused = runner.invoke(app, ["datasets", "augment", raw.id, "-m", "swap"], env=env)
    assert raw_refused.exit_code == 1 and "process this raw one first" in raw_refused.output


def test_methods_are_read_from_name_and_value() -> None:
    assert parse_method("swap") == {"name": "swap"}
    assert parse_method("synonym:0.3") == {"name": "synonym", "rate": 0.3}
    assert parse_method("rotate:30") == {"name": "rotate", "degrees": 30.0}
    assert parse_method("flip:vertical") == {"name": "flip", "direction": "vertical"}
