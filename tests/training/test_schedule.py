"""The step plan: data order and learning rate are functions of the step."""

from __future__ import annotations

import itertools
import math

import pytest

from tuneforge.training.schedule import Plan
from tuneforge.training.spec import SFTSpec


def spec(**values: object) -> SFTSpec:
    return SFTSpec(base_model="m", dataset_id="d", **values)


def test_steps_cover_every_example_once_per_epoch() -> None:
    plan = Plan(spec(batch_size=3, gradient_accumulation=2, epochs=2), examples=10)
    assert plan.micro_per_epoch == 4 and plan.total_steps == 4
    seen = [i for step in range(1, 5) for batch in plan.step_batches(step) for i in batch]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]  # each epoch is shuffled afresh
    assert plan.epoch_at(4) == 2.0


def test_the_order_depends_on_the_seed_only() -> None:
    a = Plan(spec(seed=1), examples=50)
    b = Plan(spec(seed=1, learning_rate=0.1), examples=50)
    c = Plan(spec(seed=2), examples=50)
    assert a.micro_batch(7) == b.micro_batch(7) != c.micro_batch(7)


def test_max_steps_wins_over_epochs() -> None:
    assert Plan(spec(max_steps=7, epochs=50), examples=10).total_steps == 7
    assert Plan(spec(epochs=0.5, batch_size=1), examples=10).total_steps == 5


@pytest.mark.parametrize("scheduler", ["cosine", "linear", "constant"])
def test_learning_rate_warms_up_then_follows_the_schedule(scheduler: str) -> None:
    plan = Plan(spec(max_steps=100, warmup_ratio=0.1, scheduler=scheduler), examples=10)
    rates = [plan.learning_rate(s) for s in range(1, 101)]
    assert plan.warmup_steps == 10
    assert rates[0] == pytest.approx(2e-5) and rates[9] == pytest.approx(2e-4)
    assert all(a < b for a, b in itertools.pairwise(rates[:10]))
    if scheduler == "constant":
        assert set(rates[10:]) == {2e-4}
    else:
        assert rates[-1] == pytest.approx(0.0, abs=1e-12)
        assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    if scheduler == "cosine":
        middle = 10 + 45
        assert rates[middle - 1] == pytest.approx(2e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)))
