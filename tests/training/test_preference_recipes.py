"""The preference recipes as records: the data they learn from, how their batches look to the
estimate, and their own check (no test split: no held-out preference accuracy)."""

from __future__ import annotations

import pytest

from tests.training.test_estimate import stats
from tuneforge.training.registry import recipe
from tuneforge.training.spec_checks import DatasetFacts

SPEC = {"base_model": "gemma-3-270m", "dataset_id": "d", "epochs": 2}


def test_their_data_and_batches() -> None:
    dpo, orpo, kto = recipe("dpo"), recipe("orpo"), recipe("kto")
    assert dpo.data == orpo.data == ("preference",)
    assert kto.data == ("feedback", "preference")
    pair = dpo.batching(dpo.spec(**SPEC))
    assert (pair.sequences, pair.reference_passes) == (2.0, 1.0)  # both answers, once in 2 epochs
    simpo = dpo.batching(dpo.spec(**SPEC, loss_type="simpo", beta=2.0))
    assert (simpo.sequences, simpo.reference_passes) == (2.0, 0.0)
    assert orpo.batching(orpo.spec(**SPEC)).reference_passes == 0.0
    single = kto.batching(kto.spec(**SPEC))
    # each step's mismatched pairs, and the answers and mismatched pairs once in 2 epochs
    assert (single.sequences, single.reference_passes) == (1.0, 2.0)


@pytest.mark.parametrize("trainer", ["dpo", "orpo", "kto"])
def test_without_a_test_split_they_warn_that_accuracy_is_not_held_out(trainer: str) -> None:
    found = recipe(trainer)
    assert found.check is not None
    spec = found.spec(**SPEC)
    split = stats()
    assert found.check(spec, DatasetFacts("preference", (), split, 900)) == []
    train_only = split.model_copy(update={"rows": {"train": 1000}})
    (warning,) = found.check(spec, DatasetFacts("preference", (), train_only, 1000))
    assert warning.fields == ("dataset_id",) and warning.severity == "warning"
    assert "no test split" in warning.message
