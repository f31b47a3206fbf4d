"""The SFT recipe on a tiny random Gemma 3: it learns, accumulates exactly and resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file

from tests.training.conftest import Recorder, conversations
from tuneforge.errors import JobCancelled
from tuneforge.models.loading import load_causal_lm
from tuneforge.training.recipes.sft import Checkpoints, train_sft
from tuneforge.training.runtime import prepare_model, runtime_for
from tuneforge.training.spec import SFTSpec

EXACT = {"precision": "fp32", "warmup_ratio": 0.0}


def spec(**values: object) -> SFTSpec:
    base: dict[str, object] = {
        "base_model": "tiny-random-gemma3",
        "dataset_id": "d",
        "learning_rate": 1e-2,
        "batch_size": 4,
        "lora_r": 8,
        "lora_alpha": 16,
    }
    return SFTSpec(**(base | values))


def test_lora_learns_and_changes_every_trained_weight(tiny_model: Path, tmp_path: Path) -> None:
    data = conversations(12)
    train, held_out = data[:8], data[8:]  # numbers 8-11 are never trained on
    recorder = Recorder()
    outcome = train_sft(
        spec(max_steps=40, eval_every=20), tiny_model, train, held_out, recorder, tmp_path
    )
    losses = recorder.series("loss")
    assert len(losses) == 40 and outcome.steps == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    evals = recorder.series("eval_loss")
    assert len(evals) == 3 and evals[-1] < evals[0]  # before, at step 20, at the end
    assert recorder.points["perplexity"][40] == pytest.approx(
        torch.tensor(recorder.points["eval_loss"][40]).exp().item(), rel=1e-6
    )
    assert 0 <= recorder.points["token_accuracy"][40] <= 1
    assert {"learning_rate", "grad_norm", "tokens_per_second", "epoch", "eta_seconds"} <= set(
        recorder.points
    )
    assert any("system/cpu_percent" in points for points in [recorder.points])
    assert recorder.sample_sets and recorder.sample_sets[-1][0] == 40
    assert recorder.sample_sets[-1][1][0]["reference"] == "Number 8 is rose."
    # Every LoRA matrix moved away from its initial value (the same seed builds the same start).
    adapter = load_file(str(outcome.output / "adapter_model.safetensors"))
    run = spec()
    initial = get_peft_model_state_dict(prepare_model(run, tiny_model, runtime_for(run)))
    assert (
        set(adapter) == set(initial) and len(adapter) == 2 * 7 * 2
    )  # A and B, 7 linears, 2 layers
    unchanged = [name for name in adapter if torch.equal(adapter[name], initial[name].float())]
    assert unchanged == []
    assert (outcome.output / "tokenizer.json").exists()
    assert (outcome.output / "chat_template.jinja").exists()


def test_full_fine_tuning_changes_every_weight(tiny_model: Path, tmp_path: Path) -> None:
    data = conversations(4)
    before = {
        k: v.clone() for k, v in load_causal_lm(tiny_model, torch.float32).state_dict().items()
    }
    outcome = train_sft(
        spec(method="full", max_steps=3, learning_rate=1e-3, **EXACT),
        tiny_model,
        data,
        [],
        Recorder(),
        tmp_path,
    )
    assert outcome.kind == "full"
    after = load_causal_lm(outcome.output, torch.float32).state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert set(changed) == set(before)  # embeddings (tied with the head) and norms included


def test_gradient_accumulation_equals_a_larger_batch(tiny_model: Path, tmp_path: Path) -> None:
    data = conversations(8)
    runs = {}
    for batch, accumulation in ((4, 1), (1, 4)):
        recorder = Recorder()
        outcome = train_sft(
            spec(max_steps=4, batch_size=batch, gradient_accumulation=accumulation, **EXACT),
            tiny_model,
            data,
            [],
            recorder,
            tmp_path / f"{batch}x{accumulation}",
        )
        runs[batch] = (
            recorder.series("loss"),
            load_file(str(outcome.output / "adapter_model.safetensors")),
        )
    (loss_a, weights_a), (loss_b, weights_b) = runs[4], runs[1]
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], rtol=1e-4, atol=1e-6)


def test_resume_after_cancel_continues_the_same_trajectory(
    tiny_model: Path, tmp_path: Path
) -> None:
    data = conversations(8)
    run = spec(max_steps=10, batch_size=2, lora_dropout=0.1, checkpoint_every=100, **EXACT)
    straight = Recorder()
    train_sft(run, tiny_model, data, [], straight, tmp_path / "straight")

    stopped = Recorder(cancel_after=4)
    workdir = tmp_path / "stopped"
    saved: list[int] = []
    with pytest.raises(JobCancelled, match="step 4"):
        train_sft(
            run,
            tiny_model,
            data,
            [],
            stopped,
            workdir,
            Checkpoints(save=lambda path, step: saved.append(step)),
        )
    assert saved == [4]
    resumed = Recorder()
    outcome = train_sft(
        run,
        tiny_model,
        data,
        [],
        resumed,
        workdir,
        Checkpoints(latest=workdir / "checkpoints" / "latest"),
    )
    assert outcome.steps == 10
    assert sorted(resumed.points["loss"]) == list(range(5, 11))  # the steps continue
    combined = stopped.series("loss")[:4] + resumed.series("loss")
    assert combined == pytest.approx(straight.series("loss"), rel=1e-5)
