"""Settings that are legal but almost surely wrong are warned about, and settings that cannot
work are refused, each naming its field and saying what to change."""

from __future__ import annotations

from tuneforge.data.stats import DatasetStats, StatsBuilder
from tuneforge.training.spec import SFTSpec
from tuneforge.training.spec_checks import check_spec, refusals


def stats(prompts: list[int], answers: list[int], turns: int = 2) -> DatasetStats:
    builder = StatsBuilder()
    texts = [f"example {i}" for i in range(len(prompts))]
    builder.add_lengths("train", prompts, answers, [turns] * len(prompts), texts)
    return builder.finish()


def spec(**values: object) -> SFTSpec:
    return SFTSpec.model_validate({"base_model": "gemma-3-270m", "dataset_id": "d", **values})


def fields(findings: list) -> dict[str, str]:
    return {name: f.severity for f in findings for name in f.fields}


def test_sensible_settings_draw_nothing() -> None:
    assert check_spec(spec(), stats([30, 40, 50], [10, 20, 30]), 3) == []


def test_a_max_length_that_cuts_every_answer_is_refused_with_a_length_that_works() -> None:
    data = stats([40, 60, 80], [10, 20, 300])
    findings = check_spec(spec(max_length=40), data, 3)
    [refusal] = refusals(findings)
    assert refusal.fields == ("max_length",)
    assert "cuts every answer" in refusal.message and "shortest prompt is 40" in refusal.message
    suggested = int(refusal.message.split("Raise max length to ")[1].split(" ")[0])
    assert suggested > 80 and refusals(check_spec(spec(max_length=suggested), data, 3)) == []
    # One token of room for the shortest answer is enough to train on.
    assert refusals(check_spec(spec(max_length=41), data, 3)) == []


def test_the_refusal_needs_answers_only_loss_and_single_exchanges() -> None:
    data = stats([40, 60], [10, 20])
    assert refusals(check_spec(spec(max_length=32, assistant_only_loss=False), data, 2)) == []
    multi = stats([40, 60], [10, 20], turns=4)  # earlier answers may fit before the cut
    assert refusals(check_spec(spec(max_length=32), multi, 2)) == []


def test_max_length_below_most_or_every_example_is_a_warning() -> None:
    most = check_spec(spec(max_length=50), stats([30, 60, 70], [10, 10, 10]), 3)
    assert fields(most) == {"max_length": "warning"} and "most examples" in most[0].message
    answers = check_spec(spec(max_length=32), stats([10, 10, 10], [20, 40, 50]), 3)
    assert fields(answers) == {"max_length": "warning"} and "most answers" in answers[0].message
    every = check_spec(spec(max_length=30), stats([20, 21, 22], [12, 12, 30]), 3)
    assert fields(every) == {"max_length": "warning"} and "shorter than every" in every[0].message


def test_learning_rates_far_off_for_the_method_are_warnings() -> None:
    data = stats([30], [10])
    assert fields(check_spec(spec(learning_rate=1), data, 1)) == {"learning_rate": "warning"}
    assert check_spec(spec(learning_rate=5e-3), data, 1) == []
    full = check_spec(spec(learning_rate=5e-3, method="full"), data, 1)
    assert fields(full) == {"learning_rate": "warning"} and "full fine-tuning" in full[0].message
    assert fields(check_spec(spec(learning_rate=1e-9), data, 1)) == {"learning_rate": "warning"}


def test_steps_that_do_not_reach_one_epoch_are_a_warning() -> None:
    data = stats([30] * 4, [10] * 4)
    short = check_spec(spec(max_steps=2, batch_size=4), data, 100)
    assert fields(short) == {"max_steps": "warning"}
    assert "8 of the 100" in short[0].message and "at least 25" in short[0].message
    assert check_spec(spec(max_steps=25, batch_size=4), data, 100) == []
    assert fields(check_spec(spec(epochs=0.5), data, 100)) == {"epochs": "warning"}
