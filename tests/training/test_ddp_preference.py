"""Data-parallel preference training: for DPO and KTO two gloo processes on this CPU train as one
process with the doubled batch (the same loss curve, reward metrics, KTO's batch-level KL
estimate, evaluation and adapter), and a DPO checkpoint of one process resumes in two. ORPO
trains through the same pair passes as DPO (`components/preference.py`), with a loss that needs
no reference: DPO's run covers it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.training.conftest import Recorder, feedback, preferences
from tuneforge.training.parallel.launcher import launch
from tuneforge.training.recipe import Checkpoints
from tuneforge.training.registry import recipe
from tuneforge.training.spec import TrainingBase

#: The metrics besides the loss each trainer's two layouts must agree on.
AGREEING = {
    "dpo": ["rewards/margin", "rewards/accuracy", "grad_norm"],
    "kto": ["kl", "rewards/accuracy", "grad_norm"],
}


def spec(trainer: str, **values: Any) -> TrainingBase:
    base: dict[str, Any] = {
        "base_model": "tiny-random-gemma3",
        "dataset_id": "d",
        "learning_rate": 1e-2,
        "lora_r": 8,
        "lora_alpha": 16,
        "max_steps": 3,
        "checkpoint_every": 2,
        "precision": "fp32",
        "warmup_ratio": 0.0,
    }
    return recipe(trainer).spec(**(base | values))


def records(trainer: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """10 training examples (a step's batch of 4 on one process, of 2 on each of two: the
    third step has 2, all on rank 0, so rank 1's share is empty) and 2 test examples."""
    data = feedback(12) if trainer == "kto" else preferences(12)
    return data[:10], data[10:]


def assert_same_adapter(output: Path, expected: Path) -> None:
    """The adapters of two runs agree: AdamW divides each gradient by its own running size, so
    a weight whose gradient is near 0 magnifies the float differences of sums taken in another
    order (up to 1e-4 here, against steps of about the learning rate, 1e-2)."""
    weights = load_file(str(expected / "adapter_model.safetensors"))
    for name, tensor in load_file(str(output / "adapter_model.safetensors")).items():
        torch.testing.assert_close(tensor, weights[name], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("trainer", ["dpo", "kto"])
def test_two_processes_train_as_one_with_the_doubled_batch(
    trainer: str, tiny_model: Path, tmp_path: Path
) -> None:
    train, test = records(trainer)
    one, two = Recorder(), Recorder()
    single = launch(spec(trainer, batch_size=4), tiny_model, train, test, one, tmp_path / "one")
    double = launch(
        spec(trainer, batch_size=2, devices=2), tiny_model, train, test, two, tmp_path / "two"
    )
    expected = one.series("loss")
    assert len(expected) == 3 and expected[1] < expected[0]  # it learns: the curve is no line
    assert two.series("loss") == pytest.approx(expected, rel=1e-4, abs=1e-5)
    for name in AGREEING[trainer]:
        assert two.series(name) == pytest.approx(one.series(name), rel=1e-3, abs=1e-5), name
    assert two.series("tokens_per_second") and two.points["loss"].keys() == {1, 2, 3}
    assert list(two.points["eval_loss"]) == [3]  # rank 0 evaluates, at the end
    assert two.points["eval_loss"][3] == pytest.approx(one.points["eval_loss"][3], rel=1e-4)
    assert single.steps == double.steps == 3 and single.tokens == double.tokens
    assert_same_adapter(double.output, single.output)

    if trainer != "dpo":
        return
    # The checkpoint of step 2 (with the reference log-probabilities kept beside it) resumes in
    # two processes and continues the one-process curve.
    resumed = Recorder()
    outcome = launch(
        spec(trainer, batch_size=2, devices=2),
        tiny_model,
        train,
        test,
        resumed,
        tmp_path / "one-then-two",
        Checkpoints(latest=tmp_path / "one" / "checkpoints" / "latest"),
    )
    assert sorted(resumed.points["loss"]) == [3]
    assert resumed.series("loss") == pytest.approx(expected[2:], rel=1e-4, abs=1e-5)
    assert any("stored with the checkpoint" in line for line in resumed.logs)
    assert_same_adapter(outcome.output, single.output)
