"""Merged and Ollama exports of a fine-tune of the encoder-free Gemma 4 (the tiny twin of the 12B:
LoRA on the language model and on the patch projection, the projection into the decoder trained
whole) through the API: the merged folder, loaded by transformers, reads its image processor's
settings and gives base + adapter's greedy answer to an image prompt; the Ollama package carries
the q8_0 text model and the `gemma4uv` projector, both checked in llama.cpp."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import add_user, bearer
from tests.export.test_export_api import export, unzip
from tests.export.test_gemma4_vision_export_api import image_answer
from tests.export.test_vision_export_api import merged_export
from tests.fine_tuned import add_fine_tuned
from tests.models.gemma4_unified import TINY_UNIFIED_ID, tiny_unified_dir

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def unified_adapter(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEFT's random initialisation (both LoRA matrices non-zero) and a projector moved from
    the base's: it answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm, load_tokenizer
    from tuneforge.training.components.vision import lora_targets, modules_to_save

    torch.manual_seed(7)
    base = load_causal_lm(tiny_unified_dir(models_dir), torch.float32)
    parts = ["projector", "vision_tower"]
    config = LoraConfig(
        r=8,
        lora_alpha=64,
        target_modules=lora_targets(["all-linear"], parts, base),
        modules_to_save=modules_to_save(parts, base),
        init_lora_weights=False,
    )
    tuned = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if "modules_to_save" in name:
                parameter.mul_(1.5)
    out = tmp_path_factory.mktemp("unified-adapter")
    tuned.save_pretrained(out)
    load_tokenizer(tiny_unified_dir(models_dir)).save_pretrained(out)
    return out


def test_a_merged_unified_gemma_4_export_answers_like_base_and_adapter(
    make_client, settings, models_dir: Path, unified_adapter: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from tuneforge.models.vision import vision_info

    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", unified_adapter, "12B eyes", TINY_UNIFIED_ID)

    merged_export(client, alice, model_id, tmp_path / "merged")

    base_dir = tiny_unified_dir(models_dir)
    assert vision_info(tmp_path / "merged") == vision_info(base_dir)
    load = AutoModelForImageTextToText.from_pretrained
    merged_model = load(tmp_path / "merged", dtype=torch.float32)
    assert type(merged_model).__name__ == "Gemma4UnifiedForConditionalGeneration"
    merged_tokens, merged_logits = image_answer(merged_model, tmp_path / "merged")
    del merged_model
    tuned = PeftModel.from_pretrained(load(base_dir, dtype=torch.float32), unified_adapter)
    tuned_tokens, tuned_logits = image_answer(tuned, base_dir)
    _, base_logits = image_answer(load(base_dir, dtype=torch.float32), base_dir)
    assert merged_tokens == tuned_tokens
    assert float(np.abs(np.asarray(merged_logits) - np.asarray(tuned_logits)).max()) < 1e-3
    assert float(np.abs(np.asarray(base_logits) - np.asarray(tuned_logits)).max()) > 1e-2


def test_a_unified_gemma_4_ollama_package_carries_both_files_checked_in_llama_cpp(
    make_client, settings, unified_adapter: Path, tmp_path: Path
) -> None:
    """The q8_0 text model passes the text check; the projector, written from the merged patch
    embedding and projection, passes the image check beside an f16 copy of the text model."""
    from tuneforge.export.gguf_header import read_header

    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", unified_adapter, "12B eyes", TINY_UNIFIED_ID)
    choices = client.get(f"/api/v1/models/{model_id}/export-choices", headers=alice).json()
    assert ("ollama", "q8_0") in {(c["format"], c["quantization"]) for c in choices["choices"]}

    ollama = export(client, alice, model_id, format="ollama", quantization="q8_0")
    assert ollama["status"] == "succeeded", ollama["error"]
    check = ollama["verification"]["gguf"]
    assert check["architecture"] == "gemma4" and check["passed"] is True
    image = check["image"]
    assert image["projector_type"] == "gemma4uv" and image["loaded_in_llama_cpp"] is True
    assert image["same_prompt_tokens"] is True and image["passed"] is True
    # measured: effect_diff 0.031 against an image effect of 6.9, 16 of 16 greedy tokens
    assert image["effect_diff"] < image["max_image_diff_share"] * image["image_effect"]
    files = unzip(client, alice, ollama["id"], tmp_path / "ollama")
    assert sorted(files) == sorted(
        ["Modelfile", "README.md", "12b-eyes-q8_0.gguf", "mmproj-12b-eyes-f16.gguf"]
    )
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith("FROM ./12b-eyes-q8_0.gguf\nFROM ./mmproj-12b-eyes-f16.gguf\n")
    fields = read_header(tmp_path / "ollama" / "mmproj-12b-eyes-f16.gguf").fields
    assert fields["clip.projector_type"] == "gemma4uv"
