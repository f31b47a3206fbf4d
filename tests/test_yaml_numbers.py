"""YAML configs read `2e-4` as a number, as people mean it (PyYAML alone reads the text "2e-4",
which a spec's strict numbers refuse)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.training.local_run import read_config
from tuneforge.yaml_numbers import safe_load


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2e-4", 0.0002),
        ("1E5", 100000.0),
        ("-3e+2", -300.0),
        (".5e3", 500.0),
        ("2.0e-5", 2e-5),
        ("0.5", 0.5),
        ("12", 12),
        ("1e", "1e"),
        ("e5", "e5"),
        ('"2e-4"', "2e-4"),
        ("[1e-3, x]", [0.001, "x"]),
    ],
)
def test_numbers_as_people_write_them(text: str, value: object) -> None:
    assert safe_load(f"value: {text}") == {"value": value}


def test_a_local_run_config_takes_a_learning_rate_written_2e_4(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "base_model: tiny-random-gemma3\nlearning_rate: 2e-4\nmax_steps: 1e1\ndata: qa.csv\n",
        encoding="utf-8",
    )
    spec, data = read_config(config)
    assert (spec.learning_rate, spec.max_steps, data) == (0.0002, 10, tmp_path / "qa.csv")
