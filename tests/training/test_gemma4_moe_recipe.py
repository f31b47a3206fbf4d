"""The tiny mixture-of-experts Gemma 4 is the catalog's numbers, and trains with LoRA through
the SFT recipe: the loss falls and the adapter is saved. PEFT's `all-linear` adapts every
`nn.Linear` of the language model: attention, the dense MLP and each layer's router
(`router.proj`); the experts' weights are fused 3-D parameters (`experts.gate_up_proj`,
`experts.down_proj`), not linear layers, so they stay frozen as they are, and a merge leaves them
untouched: the LoRA fine-tune exports as a GGUF file that passes the merge and llama.cpp checks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors import safe_open

from tests.export.test_gguf import needs_llama_cpp
from tests.training.conftest import Recorder, conversations
from tuneforge.export.build import Plan, build
from tuneforge.export.card import CardFacts
from tuneforge.models.catalog import catalog
from tuneforge.models.tokenizer import ensure_gguf
from tuneforge.training.recipes.sft import train_sft
from tuneforge.training.spec import SFTSpec

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def moe_model(models_dir: Path) -> Path:
    from tuneforge.models.loading import model_dir

    entry = catalog().get("tiny-random-gemma4-moe")
    assert entry is not None and entry.architecture.experts == 4
    return model_dir(entry, models_dir)


def test_the_tiny_moe_is_the_catalogs_numbers(moe_model: Path) -> None:
    import torch

    from tuneforge.models.loading import load_causal_lm

    entry = catalog().get("tiny-random-gemma4-moe")
    assert entry is not None
    model = load_causal_lm(moe_model, torch.float32)
    config = model.config
    assert config.enable_moe_block and config.num_experts == entry.architecture.experts
    assert (config.top_k_experts, config.moe_intermediate_size) == (2, 32)
    values = sum(t.numel() for n, t in model.state_dict().items() if n != "lm_head.weight")
    assert values == entry.parameters
    layer = model.model.layers[0]
    assert tuple(layer.experts.gate_up_proj.shape) == (4, 64, 64)  # fused: not nn.Linear
    assert not torch.equal(layer.router.per_expert_scale, torch.ones(4))  # drawn, not 1


def test_lora_learns_beside_the_frozen_experts_and_exports_as_gguf(
    moe_model: Path, models_dir: Path, tmp_path: Path
) -> None:
    data = conversations(8)
    recorder = Recorder()
    spec = SFTSpec(
        base_model="tiny-random-gemma4-moe", dataset_id="d", learning_rate=1e-2, batch_size=4,
        lora_r=8, lora_alpha=16, precision="fp32", warmup_ratio=0.0, max_steps=30,
        eval_every=30,
    )  # fmt: skip
    outcome = train_sft(spec, moe_model, data, data[:4], recorder, tmp_path)
    losses = recorder.series("loss")
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    with safe_open(outcome.output / "adapter_model.safetensors", "np") as adapter:
        keys = list(adapter.keys())
    adapted = {key.split(".lora_")[0].rsplit(".", 1)[-1] for key in keys}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                       "down_proj", "proj"}  # fmt: skip
    assert [key for key in keys if ".router.proj." in key] and "experts" not in " ".join(keys)
    needs_llama_cpp()
    facts = CardFacts(
        name="MoE", base_model="tiny-random-gemma4-moe", base_name="Tiny random Gemma 4 MoE",
        base_hub_id=None, license="Apache-2.0", dataset=None, spec={}, metrics={},
        format="gguf", quantization="f16",
    )  # fmt: skip
    plan = Plan(
        format="gguf", quantization="f16", model_kind="adapter", source=outcome.output,
        base_dir=moe_model, base_dtype="float32", vocab_gguf=ensure_gguf(models_dir),
        facts=facts,
    )  # fmt: skip
    out = tmp_path / "export"
    out.mkdir()
    verification = build(plan, out, lambda _fraction, _message: None)
    assert verification["merge"]["passed"] is True
    assert verification["gguf"]["architecture"] == "gemma4" and verification["gguf"]["passed"]
