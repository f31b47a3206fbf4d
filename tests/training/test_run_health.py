"""What a real SFT run reports for its health flags and its estimates, on tiny-random-gemma3: how
far each step moved the weights, whether each sample answer ended, the timings of its phases;
learning rate 1 is flagged from its first steps, the product's default learning rate is not;
plain-text inputs are flagged as missing the chat template."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import Recorder, conversations
from tuneforge.training.health import health_flags
from tuneforge.training.recipe import Outcome
from tuneforge.training.recipes.sft import train_sft
from tuneforge.training.spec import SFTSpec

pytestmark = pytest.mark.timeout(600)


def run(
    tiny_model: Path, tmp_path: Path, records: list[dict[str, object]], **values: object
) -> tuple[Outcome, Recorder, list[str]]:
    spec = SFTSpec(
        **{  # type: ignore[arg-type]
            "base_model": "tiny-random-gemma3",
            "dataset_id": "d",
            "max_steps": 12,
            "eval_every": 6,
            "checkpoint_every": 6,
            "sample_max_new_tokens": 4,
            **values,
        }
    )
    recorder = Recorder()
    outcome = train_sft(spec, tiny_model, records[:-4], records[-4:], recorder, tmp_path)
    flags = health_flags(
        recorder.points,
        dict(recorder.sample_sets),
        [{"level": "info", "message": m} for m in recorder.logs],
        spec.learning_rate,
    )
    return outcome, recorder, [flag.code for flag in flags]


def test_learning_rate_1_is_flagged_and_the_default_is_not(
    tiny_model: Path, tmp_path: Path
) -> None:
    data = conversations(16)
    _, recorder, codes = run(tiny_model, tmp_path / "one", data, learning_rate=1.0)
    assert "updates_exploding" in codes
    assert max(recorder.series("update_ratio")) > 1
    _, recorder, codes = run(tiny_model, tmp_path / "default", data)
    assert not {"updates_exploding", "loss_exploding", "grad_exploding", "loss_not_finite"} & set(
        codes
    )
    assert max(recorder.series("update_ratio")) < 0.1


def test_samples_say_whether_they_ended_and_phases_are_timed(
    tiny_model: Path, tmp_path: Path
) -> None:
    outcome, recorder, _ = run(tiny_model, tmp_path, conversations(16))
    items = [item for _, answers in recorder.sample_sets for item in answers]
    assert items and all(isinstance(item["ended"], bool) for item in items)
    phases = outcome.phases
    assert phases["load_seconds"] > 0 and phases["save_seconds"] > 0
    assert phases["eval_seconds"] > 0 and phases["eval_tokens"] > 0
    assert phases["sample_tokens"] == 3 * 3 * 4  # 3 evaluations x 3 prompts x 4 tokens
    assert phases["checkpoints"] == 1  # at step 6 (not at the end)
    assert not any("chat template" in line for line in recorder.logs)
    outcome, recorder, _ = run(
        tiny_model, tmp_path / "unsampled", conversations(16), max_steps=6, sample_answers=False
    )
    assert not recorder.sample_sets and "sample_tokens" not in outcome.phases
    assert outcome.phases["eval_tokens"] > 0  # evaluated, without sample answers


def test_plain_text_inputs_are_flagged_as_missing_the_chat_template(
    tiny_model: Path, tmp_path: Path
) -> None:
    records: list[dict[str, object]] = [
        {"text": f"Number {i} is a colour of the rainbow."} for i in range(12)
    ]
    _, recorder, codes = run(tiny_model, tmp_path, records, max_steps=2, eval_every=0)
    assert "no_chat_template" in codes
    assert any("<start_of_turn>" in line for line in recorder.logs)
