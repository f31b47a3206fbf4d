"""SFT on images with the tiny Gemma 4, straight through the recipe: its images (each with its own
number of soft tokens) reach the model, the loss falls, the sample answers are to held-out images
with their thumbnails, LoRA stays in the language model by default and reaches the encoder's
wrapped linear layers and the `embed_vision` projector only when `train_vision` names them; every
Gemma 4, the encoder-free 12B too, takes an image dataset at the Train page."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from safetensors.torch import load_file

from tests.images import coloured_images
from tests.training.conftest import Recorder
from tests.training.test_vision_recipe import QUESTION, learned_with_image_samples
from tests.training.test_vision_recipe import spec as gemma3_spec
from tuneforge.models.catalog import catalog
from tuneforge.training.recipes.sft import train_sft
from tuneforge.training.spec import SFTSpec


def stretched(data: bytes, index: int) -> bytes:
    """The image at another shape (wide, tall or square), so images differ in soft tokens."""
    width, height = ((240, 120), (100, 300), (200, 200))[index % 3]
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").resize((width, height)).save(out, format="PNG")
    return out.getvalue()


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
            "images": [stretched(data, index)],
        }
        for index, (data, colour) in enumerate(coloured_images(count, seed=seed))
    ]


def spec(**values: Any) -> SFTSpec:
    """The Gemma 3 vision recipe test's settings, on the tiny Gemma 4."""
    return gemma3_spec(**({"base_model": "tiny-random-gemma4"} | values))


def train_the_language_model(base_model: str, model_dir: Path, tmp_path: Path) -> None:
    """SFT on images of three shapes: the loss falls, the samples answer held-out images, the
    image side stays frozen, LoRA learned in the language model only, and the output has the
    processor's files."""
    train, test = records(12, seed=1), records(4, seed=2)
    recorder = Recorder()
    run = spec(base_model=base_model, max_steps=16)
    outcome = train_sft(run, model_dir, train, test, recorder, tmp_path)
    learned_with_image_samples(recorder, test, steps=16)
    assert any("stay frozen" in line for line in recorder.logs)
    saved = load_file(str(outcome.output / "adapter_model.safetensors"))
    assert saved and all("language_model" in name for name in saved)
    assert all(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)
    for name in ("preprocessor_config.json", "processor_config.json", "tokenizer.json"):
        assert (outcome.output / name).is_file()


def train_the_image_side(base_model: str, model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """Three SFT steps on images with `train_vision` naming the vision tower and the projector
    (the log says both are trained); the saved adapter's weights."""
    recorder = Recorder()
    run = spec(base_model=base_model, max_steps=3, train_vision=["vision_tower", "projector"])
    outcome = train_sft(run, model_dir, records(8, seed=3), [], recorder, tmp_path)
    assert any("so does the projector and the vision_tower" in line for line in recorder.logs)
    return load_file(str(outcome.output / "adapter_model.safetensors"))


@pytest.mark.timeout(400)
def test_gemma_4_images_train_the_language_model(tiny_gemma4_model: Path, tmp_path: Path) -> None:
    train_the_language_model("tiny-random-gemma4", tiny_gemma4_model, tmp_path)


@pytest.mark.timeout(400)
def test_train_vision_reaches_gemma_4s_encoder_and_projector(
    tiny_gemma4_model: Path, tmp_path: Path
) -> None:
    saved = train_the_image_side("tiny-random-gemma4", tiny_gemma4_model, tmp_path)
    tower = [n for n in saved if "vision_tower" in n and "lora_B" in n]
    assert tower and all(".linear." in n for n in tower)
    assert all(saved[n].abs().sum() > 0 for n in tower)  # the encoder's adapters learned
    assert any("embed_vision" in n for n in saved)
    assert not any("audio" in n for n in saved)


def test_the_train_page_takes_images_for_every_gemma_4() -> None:
    """Before launch: an image dataset suits tiny-random-gemma4, the Gemma 4 E4B and 31B, and
    the encoder-free 12B (its patches go straight into its decoder) and its tiny twin."""
    from tuneforge.training.run_checks import _images
    from tuneforge.training.spec_checks import DatasetFacts

    facts = DatasetFacts(
        mode="conversation", columns=("messages", "images"), stats=None, train_rows=8
    )
    models = ("tiny-random-gemma4", "gemma-4-e4b-it", "gemma-4-31b-it", "gemma-4-12b-it")
    for model in (*models, "gemma-4-12b", "tiny-random-gemma4-unified"):
        assert _images(spec(base_model=model), facts, "pictures", catalog().get(model)) == []
