"""Exports of a Gemma 4 fine-tune speak Gemma 4's chat format: the adapter carries Gemma 4's
template and says so in its card, and the Ollama package carries the text GGUF (llama.cpp's
`gemma4`) and the image projector (`gemma4v`), checked in llama.cpp against transformers, with a
Modelfile in Gemma 4's format."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import add_user, bearer
from tests.export.test_export_api import export, unzip
from tests.fine_tuned import add_fine_tuned
from tuneforge.models.catalog import catalog
from tuneforge.models.chat_template import GEMMA_4

pytestmark = [pytest.mark.timeout(600), pytest.mark.heavy]
LANGUAGE_MODEL_LINEARS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
]


@pytest.fixture(scope="module")
def gemma4_adapter(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter of the tiny Gemma 4's language model, randomly initialised (both matrices
    non-zero), with the tokenizer as training saves it."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm, load_tokenizer, model_dir

    entry = catalog().get("tiny-random-gemma4")
    assert entry is not None
    base_dir = model_dir(entry, models_dir)
    torch.manual_seed(7)
    config = LoraConfig(
        r=8, lora_alpha=64, target_modules=LANGUAGE_MODEL_LINEARS, init_lora_weights=False
    )
    tuned = get_peft_model(load_causal_lm(base_dir, torch.float32), config)
    out = tmp_path_factory.mktemp("gemma4-adapter")
    tuned.save_pretrained(out)
    load_tokenizer(base_dir).save_pretrained(out)
    return out


def test_gemma4_exports_carry_gemma4s_format(
    make_client, settings, gemma4_adapter: Path, tmp_path: Path
) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", gemma4_adapter, "G4", "tiny-random-gemma4")

    adapter = export(client, alice, model_id, format="adapter")
    assert adapter["status"] == "succeeded", adapter["error"]
    unzip(client, alice, adapter["id"], tmp_path / "adapter")
    card = (tmp_path / "adapter" / "README.md").read_text(encoding="utf-8")
    assert "Gemma 4's format" in card and "<start_of_turn>" not in card

    assert (tmp_path / "adapter" / "chat_template.jinja").read_text(encoding="utf-8") == (
        GEMMA_4.jinja
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "adapter")
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert text == GEMMA_4.render(CONVERSATION, add_generation_prompt=True)


def test_a_gemma4_ollama_package_carries_both_files_and_gemma4s_format(
    make_client, settings, gemma4_adapter: Path, tmp_path: Path
) -> None:
    from tuneforge.export.gguf_header import read_header

    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", gemma4_adapter, "G4", "tiny-random-gemma4")
    choices = client.get(f"/api/v1/models/{model_id}/export-choices", headers=alice).json()
    offered = {(c["format"], c["quantization"]) for c in choices["choices"]}
    assert {("gguf", "q8_0"), ("ollama", "q4_k_m")} <= offered

    ollama = export(client, alice, model_id, format="ollama", quantization="q8_0")
    assert ollama["status"] == "succeeded", ollama["error"]
    check = ollama["verification"]["gguf"]
    assert check["architecture"] == "gemma4" and check["passed"] is True
    assert check["agreement_share"] >= check["min_agreement_share"]
    image = check["image"]
    assert image["projector_type"] == "gemma4v" and image["loaded_in_llama_cpp"] is True
    assert image["same_prompt_tokens"] is True and image["passed"] is True
    files = unzip(client, alice, ollama["id"], tmp_path / "ollama")
    assert files == ["Modelfile", "README.md", "g4-q8_0.gguf", "mmproj-g4-f16.gguf"]
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith("FROM ./g4-q8_0.gguf\nFROM ./mmproj-g4-f16.gguf\n")
    assert "<|turn>" in modelfile and 'PARAMETER stop "<turn|>"' in modelfile
    assert "<start_of_turn>" not in modelfile
    fields = read_header(tmp_path / "ollama" / "g4-q8_0.gguf").fields
    assert fields["general.architecture"] == "gemma4"
    assert fields["tokenizer.chat_template"] == GEMMA_4.jinja
