"""The shared loop: a step function may update the weights itself, and early stopping can
watch an evaluation metric that should rise."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.training import tiny_gemma3
from tests.training.conftest import Recorder
from tuneforge.training.components.loop import Loop, StepWork
from tuneforge.training.runtime import Runtime
from tuneforge.training.spec import SFTSpec


def test_updates_inside_a_step_and_early_stopping_on_a_rising_metric(tmp_path: Path) -> None:
    model = tiny_gemma3()
    spec = SFTSpec(
        base_model="tiny-random-gemma3",
        dataset_id="d",
        method="full",
        max_steps=10,
        eval_every=1,
        early_stopping_patience=2,
        precision="fp32",
        warmup_ratio=0.0,
        learning_rate=1e-3,
    )
    recorder = Recorder()
    loop = Loop(
        spec, model, tmp_path, Runtime("cpu", "fp32", False), recorder, tmp_path, None, 4, 0.0
    )
    loop.watch = ("eval_reward", "max")
    rewards = iter([0.1, 0.5, 0.4, 0.3, 0.9])  # before step 1, then after steps 1, 2, 3, ...
    ids = torch.tensor([[2, 5, 7, 9, 11]])
    norms = []

    def step(batches: list[list[int]]) -> StepWork:
        loop.backward(model(input_ids=ids, labels=ids).loss)
        norms.append(loop.update())  # a first update on this step's data
        loss = model(input_ids=ids, labels=ids).loss
        loop.backward(loss)  # the loop makes the second
        return StepWork(loss=float(loss), tokens=5)

    outcome = loop.run(step, lambda: {"eval_reward": next(rewards)})
    # 0.5 after step 1 is the best; steps 2 and 3 do not beat it: patience 2 stops there.
    assert outcome.stopped_early and outcome.steps == 3
    assert "stopping early: no better eval_reward for 2 evaluations" in recorder.logs
    assert len(norms) == 3 and all(norm > 0 for norm in norms)
    state = next(iter(loop.optimizer.state.values()))
    assert int(state["step"]) == 6  # two updates a step
    assert recorder.series("update_ratio")[0] > 0
