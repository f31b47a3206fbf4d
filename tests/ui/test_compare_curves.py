"""Which curves the compare page offers for a set of runs, and which one it opens on."""

from __future__ import annotations

from typing import Any

from tuneforge.ui.compare import curves, first_curve


def run(trainer: str, *metrics: str) -> dict[str, Any]:
    return {"spec": {"trainer": trainer}, "series": {m: [[1, 0.5]] for m in metrics}}


def labels(runs: list[dict[str, Any]]) -> list[str]:
    return [curve.label for curve in curves(runs)]


def test_the_page_offers_the_curves_any_run_reports_and_opens_on_the_loss() -> None:
    sft = run("sft", "loss", "eval_loss", "learning_rate")
    dpo = run("dpo", "loss", "rewards/margin", "eval_rewards/accuracy")
    assert labels([sft, sft]) == ["Loss"]
    runs = [sft, dpo]
    assert labels(runs) == ["Loss", "Reward margin", "Preference accuracy"]
    first = first_curve(runs, curves(runs))
    assert first is not None and first.metric == "loss"


def test_grpo_runs_open_on_their_reward() -> None:
    grpo = run("grpo", "loss", "reward", "reward_std", "kl", "completion_length")
    runs = [grpo, grpo]
    assert labels(runs) == ["Loss", "Reward", "KL", "Completion length"]
    first = first_curve(runs, curves(runs))
    assert first is not None and first.metric == "reward"
    # Beside an SFT run the loss is what both report.
    mixed = [grpo, run("sft", "loss")]
    first = first_curve(mixed, curves(mixed))
    assert first is not None and first.metric == "loss"


def test_runs_without_points_yet_offer_nothing() -> None:
    runs = [run("sft"), {"spec": {}, "series": {"loss": []}}]
    assert curves(runs) == []
    assert first_curve(runs, []) is None
