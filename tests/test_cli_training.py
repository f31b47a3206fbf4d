"""`tuneforge runs start|estimate|clone`: typed options made from the training spec's fields,
laid over a YAML config, checked by the spec before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tuneforge import cli_training
from tuneforge.cli import app
from tuneforge.training.registry import recipes

runner = CliRunner()
DATASET = "d" * 32


class FakeClient:
    """Keeps what the commands send instead of calling a server."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def train(self, spec: dict[str, Any]) -> Any:
        self.sent.append(("train", spec))
        return SimpleNamespace(id="run-1")

    def clone(self, run_id: str, **changes: Any) -> Any:
        self.sent.append(("clone", {"run_id": run_id, **changes}))
        return SimpleNamespace(id="run-2")


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()

    @contextmanager
    def api(ctx: Any) -> Iterator[FakeClient]:
        yield fake

    monkeypatch.setattr(cli_training, "api", api)
    return fake


def test_start_takes_typed_options(client: FakeClient) -> None:
    result = runner.invoke(
        app,
        [
            "runs", "start", "--base-model", "gemma-3-270m", "--dataset", DATASET,
            "--lora-r", "8", "--learning-rate", "1e-4", "--no-packing", "--method", "full",
            "--lora-target-modules", "q_proj", "--lora-target-modules", "v_proj", "--no-wait",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Run run-1 queued." in result.stdout
    assert client.sent == [
        (
            "train",
            {
                "base_model": "gemma-3-270m",
                "dataset_id": DATASET,
                "lora_r": 8,
                "learning_rate": 1e-4,
                "packing": False,
                "method": "full",
                "lora_target_modules": ["q_proj", "v_proj"],
            },
        )
    ], "only the options given are sent: the server's defaults stay the defaults"


def test_options_override_the_config_file(client: FakeClient, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"base_model": "gemma-3-270m", "epochs": 3, "lora_r": 16}))
    result = runner.invoke(
        app, ["runs", "start", str(config), "--dataset-id", DATASET, "--epochs", "2", "--no-wait"]
    )
    assert result.exit_code == 0, result.output
    assert client.sent[0][1] == {
        "base_model": "gemma-3-270m",
        "epochs": 2.0,
        "lora_r": 16,
        "dataset_id": DATASET,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lora-r", "0"], "--lora-r: Input should be greater than or equal to 1"),
        (["--warmup-ratio", "0.9"], "--warmup-ratio: Input should be less than or equal to 0.5"),
        (["--tracking", "tensorboard"], "--tracking: Input should be 'wandb' or 'mlflow'"),
    ],
)
def test_a_value_out_of_bounds_is_refused_before_anything_is_sent(
    client: FakeClient, args: list[str], message: str
) -> None:
    result = runner.invoke(
        app, ["runs", "start", "--base-model", "gemma-3-270m", "--dataset", DATASET, *args]
    )
    assert result.exit_code == 1
    assert message in result.stderr
    assert client.sent == []


def test_a_missing_setting_names_its_option(client: FakeClient) -> None:
    result = runner.invoke(app, ["runs", "start", "--base-model", "gemma-3-270m"])
    assert result.exit_code == 1
    assert "--dataset: Field required" in result.stderr


def test_a_choice_outside_its_values_is_refused(client: FakeClient) -> None:
    for option, value in (("--method", "dora"), ("--trainer", "nope")):
        result = runner.invoke(app, ["runs", "start", option, value])
        assert result.exit_code == 2, result.output
        assert option in result.output
    assert client.sent == []


def test_a_config_naming_an_unknown_trainer_is_refused(client: FakeClient, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trainer: nope\nbase_model: gemma-3-270m\n")
    result = runner.invoke(app, ["runs", "start", str(config), "--dataset", DATASET])
    assert result.exit_code == 1
    trainers = ", ".join(r.trainer for r in recipes())
    assert "no trainer 'nope'" in result.stderr and f"Trainers: {trainers}." in result.stderr
    assert "sft" in trainers and "dpo" in trainers


def test_clone_takes_the_same_options(client: FakeClient) -> None:
    result = runner.invoke(app, ["runs", "clone", "run-1", "--lora-alpha", "64", "--no-wait"])
    assert result.exit_code == 0, result.output
    assert client.sent == [("clone", {"run_id": "run-1", "lora_alpha": 64})]


def test_the_help_lists_every_setting_by_section() -> None:
    result = runner.invoke(app, ["runs", "start", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--trainer", "--base-model", "--dataset", "--lora-r", "--no-packing"):
        assert option in result.stdout
    for section in ("What to train", "Optimisation", "LoRA", "Hardware"):
        assert section in result.stdout
    assert "--set" not in result.stdout


def test_a_dpo_run_from_an_earlier_fine_tune_takes_its_own_options(client: FakeClient) -> None:
    result = runner.invoke(
        app,
        [
            "runs", "start", "--trainer", "dpo", "--base-model", "gemma-3-270m",
            "--dataset", DATASET, "--start-from", "m" * 32, "--beta", "0.2",
            "--loss-type", "ipo", "--no-wait",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert client.sent == [
        (
            "train",
            {
                "trainer": "dpo",
                "base_model": "gemma-3-270m",
                "dataset_id": DATASET,
                "start_from": "m" * 32,
                "beta": 0.2,
                "loss_type": "ipo",
            },
        )
    ]
    # A setting of another trainer is refused by name before anything is sent.
    packing = runner.invoke(
        app,
        ["runs", "start", "--trainer", "dpo", "--base-model", "gemma-3-270m", "--dataset",
         DATASET, "--no-packing"],
    )  # fmt: skip
    assert packing.exit_code == 1 and "--packing: not a setting of trainer dpo" in packing.stderr


GRADERS = [
    {"type": "regex", "pattern": r"<answer>\d+</answer>", "weight": 0.5},
    {"type": "numeric_match", "column": "answer", "extract": "tag", "tag": "answer"},
]


def test_grpo_graders_are_given_as_json_options_or_in_a_config(
    client: FakeClient, tmp_path: Path
) -> None:
    common = ["--base-model", "gemma-3-270m", "--dataset", DATASET, "--no-wait"]
    given = [arg for grader in GRADERS for arg in ("--graders", json.dumps(grader))]
    result = runner.invoke(app, ["runs", "start", "--trainer", "grpo", *given, *common])
    assert result.exit_code == 0, result.output
    config = tmp_path / "grpo.yaml"
    config.write_text(yaml.safe_dump({"trainer": "grpo", "graders": GRADERS, "beta": 0.04}))
    result = runner.invoke(app, ["runs", "start", str(config), *common])
    assert result.exit_code == 0, result.output
    sent = [spec for _, spec in client.sent]
    assert sent[0]["graders"] == GRADERS and sent[1]["graders"] == GRADERS
    assert sent[1]["beta"] == 0.04
    # Not JSON, or not a grader: refused with the option's name, nothing sent.
    for bad, message in (
        ("regex", "--graders: each value must be a JSON object"),
        ('{"type": "telepathy"}', "--graders: "),
        ('{"type": "regex", "pattern": "(a"}', "--graders: "),
    ):
        result = runner.invoke(
            app, ["runs", "start", "--trainer", "grpo", "--graders", bad, *common]
        )
        assert result.exit_code == 1, (bad, result.output)
        assert message in result.stderr, result.stderr
    assert len(client.sent) == 2
    # A GRPO spec without graders says which setting is missing.
    result = runner.invoke(app, ["runs", "start", "--trainer", "grpo", *common])
    assert result.exit_code == 1 and "--graders: Field required" in result.stderr


def test_a_local_run_cannot_start_from_a_server_model(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    values = {"base_model": "tiny-random-gemma3", "data": "rows.jsonl", "start_from": "m" * 32}
    config.write_text(yaml.safe_dump(values))
    result = runner.invoke(app, ["train", str(config), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "a local run has none to continue" in result.stderr
    assert not (tmp_path / "out").exists()
