"""Exports of a Gemma 4 fine-tune speak Gemma 4's chat format: the adapter carries Gemma 4's
template and says so in its card, and GGUF (which TuneForge does not write for Gemma 4) is
refused before anything is queued."""

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

    refused = client.post(
        f"/api/v1/models/{model_id}/exports", json={"format": "gguf"}, headers=alice
    )
    assert refused.status_code == 422, refused.text
    assert "GGUF export of Tiny random Gemma 4" in refused.json()["error"]["message"]
    assert client.get(f"/api/v1/models/{model_id}/exports", headers=alice).json()["items"] == []

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
