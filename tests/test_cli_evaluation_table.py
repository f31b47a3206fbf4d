"""`tuneforge evals show` reads a fine-tune against its base as "fine-tune vs base", positive
when the fine-tune does better, whichever of A and B it was."""

from __future__ import annotations

import pytest

from tuneforge.cli_evaluations import _print_results
from tuneforge.evaluation.comparison import comparison
from tuneforge.schemas.evaluations import EvaluationPublic

BASE = {"id": "tiny-random-gemma3", "name": "Tiny", "base": None}
TUNED = {"id": "m1", "name": "Tuned", "base": "tiny-random-gemma3"}


@pytest.mark.parametrize("tuned_first", [True, False])
def test_the_table_shows_the_fine_tunes_gain(capsys, tuned_first: bool) -> None:
    models = [TUNED, BASE] if tuned_first else [BASE, TUNED]
    scores = [{"accuracy": 0.5}, {"accuracy": 1 / 6}]
    metrics = scores if tuned_first else scores[::-1]
    compared = comparison(models, metrics)
    assert compared is not None
    found = EvaluationPublic.model_validate(
        {
            "job_id": "j",
            "dataset_id": "d",
            "split": "test",
            "automatic": False,
            "suite": "classification",
            "models": models,
            "metrics": metrics,
            "difference": {"accuracy": metrics[1]["accuracy"] - metrics[0]["accuracy"]},
            "comparison": {
                "label": compared.label,
                "first": compared.first,
                "values": compared.values,
            },
            "details": [{}, {}],
            "count": 6,
            "skipped": 0,
        }
    )
    _print_results(found)
    lines = capsys.readouterr().out.splitlines()
    assert "FINE-TUNE VS BASE" in lines[1]
    assert lines[-1].split()[-1] == "+0.3333"
