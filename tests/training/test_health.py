"""The health flags of a run, from crafted metric, sample and log sequences: each flag fires on the
failure it names, and a healthy run raises none."""

from __future__ import annotations

import math
from typing import Any

from tuneforge.training.health import NO_CHAT_TEMPLATE, health_flags


def falling(steps: int = 30, start: float = 3.0) -> dict[int, float]:
    return {s: start * 0.97**s for s in range(1, steps + 1)}


def healthy() -> tuple[dict[str, dict[int, float]], dict[int, list[dict[str, Any]]]]:
    series = {
        "loss": falling(),
        "grad_norm": {s: 1.5 - s * 0.01 for s in range(1, 31)},
        "update_ratio": {s: 0.003 for s in range(1, 31)},
        "learning_rate": {s: 2e-4 for s in range(1, 31)},
        "eval_loss": {0: 3.2, 10: 2.6, 20: 2.2, 30: 2.0},
    }
    samples = {
        0: [{"prompt": "a", "answer": "", "ended": False}],  # before training: anything goes
        30: [
            {"prompt": "Which colour is 1?", "answer": "Number 1 is green.", "ended": True},
            {"prompt": "Which colour is 2?", "answer": "Number 2 is blue.", "ended": True},
        ],
    }
    return series, samples


def codes(*args: Any, **kwargs: Any) -> list[str]:
    return [flag.code for flag in health_flags(*args, **kwargs)]


def test_a_healthy_run_raises_no_flag() -> None:
    series, samples = healthy()
    logs = [{"level": "info", "message": "40 training and 10 evaluation examples"}]
    assert health_flags(series, samples, logs, learning_rate=2e-4) == []
    assert health_flags({}, {}) == []  # nothing reported yet


def test_a_loss_that_is_not_a_number_is_an_error_with_learning_rate_advice() -> None:
    series, samples = healthy()
    series["loss"][12] = math.nan
    flags = health_flags(series, samples, learning_rate=1.0)
    assert [f.code for f in flags] == ["loss_not_finite"]  # the rest follows from it
    assert flags[0].level == "error" and flags[0].step == 12
    assert "now 1" in flags[0].advice and "0.1" in flags[0].advice
    series["loss"][12] = 2.0
    series["grad_norm"][5] = math.inf
    assert codes(series, samples) == ["loss_not_finite"]


def test_an_exploding_loss_is_flagged() -> None:
    series, samples = healthy()
    series["loss"] = {1: 2.0, 2: 2.5, 3: 5.0, 4: 9.0, 5: 12.0}
    flags = health_flags(series, samples, learning_rate=1.0)
    assert "loss_exploding" in [f.code for f in flags]
    flag = next(f for f in flags if f.code == "loss_exploding")
    assert flag.step == 5 and "learning rate" in flag.advice


def test_a_loss_rising_steadily_is_flagged() -> None:
    series, samples = healthy()
    series["loss"] = {s: 2.0 + 0.06 * s for s in range(1, 21)}  # 2.06 -> 3.2, never 3x
    assert "loss_rising" in codes(series, samples)
    series["loss"] = {s: 2.0 + 0.2 * math.sin(s) for s in range(1, 21)}  # noisy but flat
    assert "loss_rising" not in codes(series, samples)


def test_a_zero_gradient_is_flagged() -> None:
    series, samples = healthy()
    series["grad_norm"] = {s: 0.0 for s in range(1, 31)}
    assert "grad_zero" in codes(series, samples)
    series["grad_norm"] = {s: 0.0 if s % 2 else 1.0 for s in range(1, 31)}  # never 3 in a row
    assert "grad_zero" not in codes(series, samples)


def test_an_exploding_gradient_is_flagged() -> None:
    series, samples = healthy()
    series["grad_norm"] = {s: 1.0 for s in range(1, 11)} | {11: 40.0}
    flags = health_flags(series, samples, learning_rate=0.5)
    flag = next(f for f in flags if f.code == "grad_exploding")
    assert flag.step == 11 and flag.level == "error" and "0.05" in flag.advice
    series["grad_norm"] = {1: 5.0, 2: 4000.0}  # out of hand at once
    assert "grad_exploding" in codes(series, samples)


def test_updates_larger_than_the_weights_are_flagged() -> None:
    series, samples = healthy()
    series["update_ratio"] = {s: 0.003 for s in range(1, 31)}  # a healthy run's (measured)
    assert codes(series, samples) == []
    series["update_ratio"][2] = 14.7  # learning rate 1 on tiny-random-gemma3, measured
    flags = health_flags(series, samples, learning_rate=1.0)
    assert [f.code for f in flags] == ["updates_exploding"]
    assert flags[0].step == 2 and "now 1" in flags[0].advice


def test_an_eval_loss_flat_or_rising_for_several_evaluations_is_flagged() -> None:
    series, samples = healthy()
    series["eval_loss"] = {0: 3.0, 10: 2.0, 20: 2.0, 30: 1.995, 40: 2.0}
    assert "eval_flat" in codes(series, samples)
    series["eval_loss"] = {0: 3.0, 10: 2.0, 20: 2.2, 30: 2.5, 40: 2.9}
    assert "eval_rising" in codes(series, samples)
    series["eval_loss"] = {0: 3.0, 10: 2.0, 20: 2.1, 30: 1.8}  # a better one among the last
    assert not {"eval_flat", "eval_rising"} & set(codes(series, samples))


def test_answers_all_the_same_or_all_empty_are_flagged() -> None:
    series, _ = healthy()
    same = {30: [{"prompt": p, "answer": "Number 1 is red.", "ended": True} for p in "abc"]}
    assert codes(series, same) == ["answers_identical"]
    empty = {30: [{"prompt": p, "answer": " ", "ended": True} for p in "abc"]}
    assert codes(series, empty) == ["answers_empty"]
    # only the newest evaluation counts: the model got better since
    _, samples = healthy()
    assert codes(series, {**samples, 10: same[30]}) == []


def test_answers_that_never_end_are_flagged() -> None:
    series, samples = healthy()
    for item in samples[30]:
        item["ended"] = False
    flags = health_flags(series, samples)
    assert [f.code for f in flags] == ["answers_never_end"]
    samples[30][0]["ended"] = True  # one ended: the model knows how to stop
    assert codes(series, samples) == []
    del samples[30][0]["ended"]  # older runs did not report it: no flag
    assert codes(series, samples) == []


def test_inputs_without_the_chat_template_are_flagged() -> None:
    series, samples = healthy()
    logs = [{"level": "warning", "message": f"{NO_CHAT_TEMPLATE}: no <start_of_turn> in it."}]
    flags = health_flags(series, samples, logs)
    assert [f.code for f in flags] == ["no_chat_template"]
    assert "conversations" in flags[0].advice


def test_errors_come_before_warnings() -> None:
    series, _ = healthy()
    series["grad_norm"] = {s: 0.0 for s in range(1, 31)}
    same = {30: [{"prompt": p, "answer": "x", "ended": True} for p in "ab"]}
    assert codes(series, same) == ["grad_zero", "answers_identical"]
