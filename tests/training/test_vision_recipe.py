"""SFT on images with the tiny vision model, straight through the recipe: the loss falls, every
trained weight moves (the projector too when it is chosen), the sample answers are to held-out
images with their thumbnails, the saved model brings its processor files, an example whose
image max length would cut is left out and counted, and a text-only model refuses images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.images import coloured_images
from tests.training.conftest import Recorder
from tuneforge.errors import InvalidInput
from tuneforge.training.recipes.sft import train_sft
from tuneforge.training.spec import SFTSpec

Q = QUESTION = "What colour is the square?"


def records(count: int, seed: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": QUESTION}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": colour}]},
            ],
            "images": [data],
        }
        for data, colour in coloured_images(count, seed=seed)
    ]


def spec(**values: Any) -> SFTSpec:
    base = {
        "base_model": "tiny-random-gemma3-vision",
        "dataset_id": "d",
        "learning_rate": 1e-2,
        "batch_size": 4,
        "lora_r": 8,
        "lora_alpha": 16,
        "max_length": 256,
        "sample_max_new_tokens": 4,
    }
    return SFTSpec(**(base | values))


def learned_with_image_samples(recorder: Recorder, test: list[dict[str, Any]], steps: int) -> None:
    """The loss fell (the last three steps under 0.6 x the first three), and the last sample
    answers, after `steps` steps, are to the test split's images, with their thumbnails."""
    losses = recorder.series("loss")
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3
    step, samples = recorder.sample_sets[-1]
    assert step == steps and len(samples) == 3
    for sample, record in zip(samples, test, strict=False):
        assert sample["prompt"] == QUESTION
        assert sample["reference"] == record["messages"][1]["content"][0]["text"]
        assert sample["images"][0].startswith("data:image/jpeg;base64,")


@pytest.mark.timeout(300)
def test_images_train_the_language_model_and_the_chosen_projector(
    tiny_vision_model: Path, tmp_path: Path
) -> None:
    train, test = records(12, seed=1), records(4, seed=2)
    recorder = Recorder()
    run = spec(max_steps=16, train_vision=["projector"])
    outcome = train_sft(run, tiny_vision_model, train, test, recorder, tmp_path)
    learned_with_image_samples(recorder, test, steps=16)
    assert any("so does the projector" in line for line in recorder.logs)
    saved = load_file(str(outcome.output / "adapter_model.safetensors"))
    assert any("multi_modal_projector" in name for name in saved)
    assert not any("vision_tower" in name for name in saved)
    assert any("language_model" in name and "lora_B" in name for name in saved)
    # LoRA's B matrices start at zero: every one of them moved, and so did the projector.
    assert all(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)
    base = load_file(str(tiny_vision_model / "model.safetensors"))
    weight = "mm_input_projection_weight"
    before = next(t for n, t in base.items() if n.endswith(weight))
    after = next(t for n, t in saved.items() if n.endswith(weight))
    assert not torch.equal(before.float(), after.float())
    for name in ("preprocessor_config.json", "processor_config.json", "tokenizer.json"):
        assert (outcome.output / name).is_file()


def test_cut_images_are_counted_and_a_text_model_refuses_them(
    tiny_vision_model: Path, tiny_model: Path, tmp_path: Path
) -> None:
    data = records(4, seed=3)
    recorder = Recorder()
    with pytest.raises(InvalidInput, match="max length") as no_room:
        train_sft(spec(max_steps=1, max_length=32), tiny_vision_model, data, [], recorder, tmp_path)
    assert no_room.value.details["fields"] == ["max_length"]
    assert any("4 of 4 train examples left out" in line for line in recorder.logs)
    with pytest.raises(InvalidInput, match="text-only") as text_only:
        train_sft(spec(max_steps=1), tiny_model, data, [], Recorder(), tmp_path / "text")
    assert text_only.value.details["fields"] == ["base_model", "dataset_id"]
