"""`tuneforge runs estimate` and `tuneforge models catalog` against a real server: the settings'
warnings and refusals, and which models can run on this server (it reaches no model hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli_datasets import Invoke, cli  # noqa: F401  (the fixture)
from tests.test_client_datasets import QA, write_csv

pytestmark = pytest.mark.surface


@pytest.mark.timeout(300)
def test_estimate_says_what_is_wrong_and_the_catalog_what_can_run(
    cli: tuple[Invoke, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    invoke, _ = cli
    raw_id = invoke("upload", str(write_csv(tmp_path / "sums.csv", QA))).stdout.split()[1]
    processed = invoke("process", raw_id, "--test-size", "6").stdout.split()[1]
    options = ["--base-model", "tiny-random-gemma3", "--dataset", processed]
    wrong = invoke("estimate", *options, "--learning-rate", "1", "--max-length", "16", group="runs")
    assert "warning: Learning rate 1 is far above" in wrong.stdout
    assert "refused: Max length 16 cuts every answer away" in wrong.stdout
    fine = invoke("estimate", *options, group="runs")
    assert "warning:" not in fine.stdout and "refused:" not in fine.stdout

    catalog = invoke("catalog", group="models").stdout.splitlines()
    here = {line.split()[0]: line.split()[-1] for line in catalog[1:] if line.strip()}
    assert here["gemma-3-270m"] == here["tiny-random-gemma3"] == "available"
    assert here["gemma-3-1b-it"] == "unavailable"
