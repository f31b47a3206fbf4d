"""Export of a vision fine-tune (a LoRA of tiny-random-gemma3-vision on every linear layer, the
image encoder's included) through the API, each format loaded in its real consumer: the adapter
and the merged model with transformers' AutoProcessor, the merged model giving base + adapter's
greedy answer to an image prompt; the Ollama package with both GGUF files, read by llama.cpp's
multimodal path. A vision model TuneForge cannot write as GGUF is refused with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.conftest import add_user, bearer
from tests.export.test_export_api import export, unzip
from tests.fine_tuned import add_fine_tuned
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Model
from tuneforge.models.vision import vision_info
from tuneforge.settings import Settings

# Models run through the API: the PostgreSQL pass skips them (see tests/conftest.py).
pytestmark = pytest.mark.heavy

VISION = "tiny-random-gemma3-vision"


@pytest.fixture(scope="module")
def vision_adapter(tiny_vision_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PEFT's random initialisation (both LoRA matrices non-zero): it answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm, load_tokenizer

    torch.manual_seed(7)
    base = load_causal_lm(tiny_vision_model, torch.float32)
    config = LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    tuned = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("vision-adapter")
    tuned.save_pretrained(out)
    load_tokenizer(tiny_vision_model).save_pretrained(out)
    return out


def add_vision_fine_tune(settings: Settings, adapter: Path, name: str, base: str = VISION) -> str:
    model_id = add_fine_tuned(settings, "alice", adapter, name)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        session.execute(update(Model).where(Model.id == model_id).values(base_model=base))
    return model_id


@pytest.fixture
def api(make_client, settings, vision_adapter):
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    return client, alice, add_vision_fine_tune(settings, vision_adapter, "Seeing bot")


def image_answer(model, processor_dir: Path, size: int) -> tuple[list[int], object]:
    """Greedy tokens and first logits for an image prompt, with the processor of
    `processor_dir` loaded by transformers' AutoProcessor."""
    from tuneforge.export.vision_check import (
        greedy_answer,
        image_inputs,
        image_prompt,
        sample_image,
    )

    inputs = image_inputs(processor_dir, sample_image(size), image_prompt())
    tokens, _, logits = greedy_answer(model.eval(), inputs, 16)
    return tokens, logits


def merged_export(client, headers: dict[str, str], model_id: str, out: Path) -> None:
    """A merged export of the vision fine-tune, unzipped into `out`: its own check passed the
    image prompt (the same greedy answer as base + adapter, logits within 1e-3)."""
    merged = export(client, headers, model_id, format="merged")
    assert merged["status"] == "succeeded", merged["error"]
    check = merged["verification"]["merge"]
    assert check["passed"] and check["image"]["same_answer"]
    assert check["image"]["max_abs_logit_diff"] < 1e-3
    files = unzip(client, headers, merged["id"], out)
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(files)


@pytest.mark.timeout(900)
def test_adapter_and_merged_vision_exports_load_with_their_processor(
    api, tiny_vision_model: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    client, alice, model_id = api
    choices = client.get(f"/api/v1/models/{model_id}/export-choices", headers=alice).json()
    assert choices["vision"] is True
    offered = {(c["format"], c["quantization"]): c for c in choices["choices"]}
    assert "mmproj" in offered["gguf", "f16"]["help"]

    adapter = export(client, alice, model_id, format="adapter")
    assert adapter["status"] == "succeeded", adapter["error"]
    files = unzip(client, alice, adapter["id"], tmp_path / "adapter")
    assert {"adapter_config.json", "preprocessor_config.json", "processor_config.json"} <= {*files}
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == VISION  # not the server's cache path
    processor = AutoProcessor.from_pretrained(tmp_path / "adapter")
    assert type(processor).__name__ == "Gemma3Processor"
    assert "AutoProcessor" in (tmp_path / "adapter" / "README.md").read_text()

    merged_export(client, alice, model_id, tmp_path / "merged")

    # The consumer's view: plain transformers on the merged folder (its inputs made by the
    # folder's own processor, loaded with AutoProcessor), PEFT on base + adapter.
    load = AutoModelForImageTextToText.from_pretrained
    info = vision_info(tiny_vision_model)
    assert info is not None
    merged_model = load(tmp_path / "merged", dtype=torch.float32)
    merged_tokens, merged_logits = image_answer(merged_model, tmp_path / "merged", info.image_size)
    del merged_model
    base = load(tiny_vision_model, dtype=torch.float32)
    _, base_logits = image_answer(base, tmp_path / "merged", info.image_size)
    tuned = PeftModel.from_pretrained(base, tmp_path / "adapter")
    tuned_tokens, tuned_logits = image_answer(tuned, tmp_path / "merged", info.image_size)
    assert merged_tokens == tuned_tokens
    assert float(np.abs(merged_logits - tuned_logits).max()) < 1e-3
    assert float(np.abs(tuned_logits - base_logits).max()) > 0.1  # the adapter matters


@pytest.mark.timeout(900)
def test_an_ollama_vision_package_carries_both_files_and_reads_images(api, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from tuneforge.export.gguf_header import read_header

    client, alice, model_id = api
    ollama = export(client, alice, model_id, format="ollama", quantization="q8_0")
    assert ollama["status"] == "succeeded", ollama["error"]
    check = ollama["verification"]["gguf"]
    assert check["agreement_share"] >= 0.85  # the text prompts
    image = check["image"]
    assert image["passed"] and image["loaded_in_llama_cpp"] and image["same_prompt_tokens"]
    assert image["file"] == "mmproj-seeing-bot-f16.gguf" and image["tokens_per_image"] == 64
    # The projector is checked beside an f16 copy of the text model, deleted afterwards.
    assert image["text_model"].startswith("f16")
    assert image["forced_agreement"] >= 14  # of 16 steps
    assert image["effect_diff"] < 0.25 * image["image_effect"]
    files = unzip(client, alice, ollama["id"], tmp_path / "ollama")
    assert files == ["Modelfile", "README.md", "mmproj-seeing-bot-f16.gguf", "seeing-bot-q8_0.gguf"]
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./seeing-bot-q8_0.gguf\nFROM ./mmproj-seeing-bot-f16.gguf\n")
    readme = (tmp_path / "ollama" / "README.md").read_text()
    assert "--mmproj mmproj-seeing-bot-f16.gguf" in readme
    fields = read_header(tmp_path / "ollama" / "mmproj-seeing-bot-f16.gguf").fields
    assert fields["general.architecture"] == "clip" and fields["clip.projector_type"] == "gemma3"
    size = ollama["size_bytes"]
    assert abs(size - estimate(client, alice, model_id)) < 0.1 * size


def estimate(client, headers, model_id: str) -> int:
    choices = client.get(f"/api/v1/models/{model_id}/export-choices", headers=headers).json()
    return next(
        int(c["bytes"])
        for c in choices["choices"]
        if (c["format"], c["quantization"]) == ("ollama", "q8_0")
    )


def test_gguf_of_a_vision_model_outside_gemma_3_is_refused(
    make_client, settings, vision_adapter
) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    model_id = add_vision_fine_tune(settings, vision_adapter, "Phone bot", base="gemma-3n-e2b")
    refused = client.post(
        f"/api/v1/models/{model_id}/exports", json={"format": "gguf"}, headers=alice
    )
    assert refused.status_code == 422, refused.text
    assert "Gemma 3n E2B" in refused.text and "merged or adapter" in refused.text
    choices = client.get(f"/api/v1/models/{model_id}/export-choices", headers=alice).json()
    assert {c["format"] for c in choices["choices"]} == {"adapter", "merged"}
