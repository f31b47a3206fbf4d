"""Merged export of a Gemma 4 vision fine-tune (a LoRA of the tiny Gemma 4 on the language model
and inside its image encoder's wrapped linear layers) through the API: the export's own check
runs an image prompt (Gemma 4's format, the image's own soft tokens, patches and positions)
through base + adapter and the merged model, and the merged folder, loaded by transformers with
its image processor and tokenizer, gives base + adapter's greedy answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import add_user, bearer
from tests.export.test_vision_export_api import merged_export
from tests.fine_tuned import add_fine_tuned

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def vision_adapter(tiny_gemma4_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEFT's random initialisation (both LoRA matrices non-zero): it answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm, load_tokenizer
    from tuneforge.training.components.vision import lora_targets

    torch.manual_seed(7)
    base = load_causal_lm(tiny_gemma4_model, torch.float32)
    targets = lora_targets(["all-linear"], ["vision_tower"], base)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=targets, init_lora_weights=False)
    tuned = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("gemma4-vision-adapter")
    tuned.save_pretrained(out)
    load_tokenizer(tiny_gemma4_model).save_pretrained(out)
    return out


def image_answer(model, model_dir: Path) -> tuple[list[int], object]:
    from tuneforge.export.vision_check import (
        greedy_answer,
        image_inputs,
        image_prompt,
        sample_image,
    )
    from tuneforge.models.chat_template import GEMMA_4
    from tuneforge.models.vision import vision_info

    info = vision_info(model_dir)
    assert info is not None and info.variable
    inputs = image_inputs(model_dir, sample_image(info.image_size), image_prompt(chat=GEMMA_4))
    assert "image_position_ids" in inputs and "mm_token_type_ids" in inputs
    tokens, _, logits = greedy_answer(model.eval(), inputs, 8)
    return tokens, logits


def test_a_merged_gemma4_vision_export_answers_like_base_and_adapter(
    make_client, settings, tiny_gemma4_model: Path, vision_adapter: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", vision_adapter, "G4 eyes", "tiny-random-gemma4")

    merged_export(client, alice, model_id, tmp_path / "merged")

    load = AutoModelForImageTextToText.from_pretrained
    merged_model = load(tmp_path / "merged", dtype=torch.float32)
    assert type(merged_model).__name__ == "Gemma4ForConditionalGeneration"
    merged_tokens, merged_logits = image_answer(merged_model, tmp_path / "merged")
    del merged_model
    tuned = PeftModel.from_pretrained(load(tiny_gemma4_model, dtype=torch.float32), vision_adapter)
    tuned_tokens, tuned_logits = image_answer(tuned, tiny_gemma4_model)
    assert merged_tokens == tuned_tokens
    assert float(np.abs(np.asarray(merged_logits) - np.asarray(tuned_logits)).max()) < 1e-3
    _, base_logits = image_answer(load(tiny_gemma4_model, dtype=torch.float32), tiny_gemma4_model)
    assert float(np.abs(np.asarray(base_logits) - np.asarray(tuned_logits)).max()) > 1e-3
