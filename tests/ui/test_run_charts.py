"""A run page's charts: what each trainer's run shows from the start, a line per grader, the
reward's spread, and the metric names and values as people read them."""

from __future__ import annotations

from tuneforge.ui.run_charts import SMALL, chart_series
from tuneforge.ui.run_format import metric, metric_name, setting

CHARTS = {chart.key: chart for chart in SMALL}


def shown_from_the_start(trainer: str) -> list[str]:
    return [c.key for c in SMALL if c.trainers is None or trainer in c.trainers]


def test_each_trainer_waits_only_for_the_curves_it_reports() -> None:
    assert shown_from_the_start("sft") == ["learning-rate", "throughput", "eval", "system"]
    assert shown_from_the_start("dpo") == [
        "rewards",
        "margin",
        "accuracy",
        "learning-rate",
        "throughput",
        "system",
    ]
    assert {"reward", "graders", "completion-length", "clip-ratio"} <= set(
        shown_from_the_start("grpo")
    )
    assert "eval" not in shown_from_the_start("grpo")
    assert "kl" not in shown_from_the_start("grpo")  # reported only with a KL weight (beta)


def test_graders_get_a_line_each_and_the_reward_its_spread() -> None:
    series = {
        "reward/format": {1: 0.0, 2: 1.0},
        "reward/format/std": {1: 0.5, 2: 0.0},
        "reward/exact": {1: 1.0, 2: 1.0},
        "eval_reward/exact": {2: 0.5},
        "reward": {1: 1.0, 2: 2.0},
        "reward_std": {1: 0.5, 2: 0.25},
    }
    graders = chart_series(CHARTS["graders"], series)
    assert [(line["name"], line["data"]) for line in graders] == [
        ("exact", [[1, 1.0], [2, 1.0]]),
        ("exact (eval)", [[2, 0.5]]),
        ("format", [[1, 0.0], [2, 1.0]]),
    ]
    assert CHARTS["graders"].shows("eval_reward/new") and not CHARTS["graders"].shows("reward")
    reward = chart_series(CHARTS["reward"], series)
    assert [(line["name"], line["data"]) for line in reward] == [
        ("Mean reward", [[1, 1.0], [2, 2.0]]),
        ("± spread", [[1, 1.5], [2, 2.25]]),
        ("± spread", [[1, 0.5], [2, 1.75]]),
    ]
    assert CHARTS["reward"].shows("reward_std")


def test_metric_names_and_values_read_as_people_say_them() -> None:
    assert metric_name("eval_rewards/accuracy") == "Eval preference accuracy"
    assert metric_name("reward/format") == "Reward: format"
    assert metric_name("eval_reward") == "Eval mean reward"
    assert metric("eval_rewards/accuracy", 0.875) == "87.5%"
    assert metric("clip_ratio", 0.1) == "10.0%"
    assert metric("rewards/margin", 0.123456) == "0.1235"


def test_a_grader_set_reads_as_its_graders() -> None:
    graders = [
        {"type": "numeric_match", "name": "sum", "weight": 1.0, "column": "answer"},
        {"type": "length", "name": "", "weight": 0.5, "maximum": 3},
    ]
    assert setting(graders) == "sum (numeric_match, weight 1), length (length, weight 0.5)"
    assert setting(["q_proj", "v_proj"]) == "q_proj, v_proj"
