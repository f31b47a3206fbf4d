"""GGUF export of a mixture-of-experts Gemma 4 (tiny-random-gemma4-moe: the 26B A4B's router and
experts beside each layer's dense MLP), checked in its consumer: llama.cpp's `gemma4` runs it and
answers like transformers in f16, in-process q8_0 and llama.cpp's q4_k_m. A file whose
per-expert scales are not the model's is caught, the export is offered for the 26B A4B, and its
size is estimated with the experts as linear layers.

Converted files are shared per module.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType

from tests.export.test_gemma4_gguf import _logit_diff
from tests.export.test_gguf import needs_llama_cpp
from tuneforge.export import gguf
from tuneforge.export.build import MIN_AGREEMENT
from tuneforge.export.gguf_check import check
from tuneforge.export.gguf_header import read_header
from tuneforge.export.sizes import gguf_bytes
from tuneforge.export.spec import gguf_refusal
from tuneforge.models.catalog import catalog
from tuneforge.models.tokenizer import ensure_gguf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
MODEL_ID = "tiny-random-gemma4-moe"


@pytest.fixture(scope="module")
def moe_model(models_dir: Path) -> Path:
    from tuneforge.models.loading import model_dir

    entry = catalog().get(MODEL_ID)
    assert entry is not None
    return model_dir(entry, models_dir)


@pytest.fixture(scope="module")
def f16(moe_model: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gemma4-moe") / "moe-f16.gguf"
    gguf.convert(moe_model, out, "f16", name="moe", vocab_gguf=ensure_gguf(models_dir))
    return out


def test_the_file_tells_llama_cpp_the_experts(f16: Path) -> None:
    header = read_header(f16)
    fields = header.fields
    assert fields["general.architecture"] == "gemma4"
    assert fields["gemma4.expert_count"] == 4
    assert fields["gemma4.expert_used_count"] == 2
    assert fields["gemma4.expert_feed_forward_length"] == 32
    assert fields["gemma4.feed_forward_length"] == [128] * 4  # the dense MLP beside them
    assert fields["gemma4.embedding_length_per_layer_input"] == 0
    tensors = {name: (shape, kind) for name, shape, kind in header.tensors}
    f32, f16_type = GGMLQuantizationType.F32, GGMLQuantizationType.F16
    for layer in range(4):
        blk = f"blk.{layer}."
        assert tensors[blk + "ffn_gate_up_exps.weight"] == ((64, 64, 4), f16_type)  # gate | up
        assert tensors[blk + "ffn_down_exps.weight"] == ((32, 64, 4), f16_type)
        assert tensors[blk + "ffn_gate_inp.weight"] == ((64, 4), f32)  # the router
        assert tensors[blk + "ffn_gate_inp.scale"] == ((64,), f32)
        assert tensors[blk + "ffn_down_exps.scale"] == ((4,), f32)  # per expert
        for norm in ("pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2", "ffn_norm"):
            assert tensors[f"{blk}{norm}.weight"] == ((64,), f32)
    assert not [name for name in tensors if name.startswith("per_layer")]


def test_f16_answers_like_transformers_and_the_expert_scales_matter(
    f16: Path, moe_model: Path, models_dir: Path, tmp_path: Path
) -> None:
    """Every greedy token agrees; every logit within rounding. The same file written from
    weights whose per-expert scales are reset to 1 (llama.cpp would silently run without
    `ffn_down_exps.scale`) answers measurably differently."""
    needs_llama_cpp()
    from safetensors.numpy import load_file, save_file

    found = check(f16, moe_model, n=16, threads=2)
    assert found.greedy == [16, 16, 16] and found.forced == [16, 16, 16]
    assert _logit_diff(f16, moe_model) < 0.25  # measured: 0.039
    other = tmp_path / "unscaled"
    shutil.copytree(moe_model, other)
    weights = load_file(other / "model.safetensors")
    for key in [k for k in weights if k.endswith("router.per_expert_scale")]:
        weights[key] = np.ones_like(weights[key])
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    unscaled = tmp_path / "unscaled.gguf"
    gguf.convert(other, unscaled, "f16", name="x", vocab_gguf=ensure_gguf(models_dir))
    assert _logit_diff(unscaled, moe_model) > 1.0  # measured: 3.1


def test_q8_0_keeps_the_router_in_f32_and_passes(
    moe_model: Path, models_dir: Path, tmp_path: Path
) -> None:
    needs_llama_cpp()
    q8 = tmp_path / "moe-q8_0.gguf"
    gguf.convert(moe_model, q8, "q8_0", name="moe", vocab_gguf=ensure_gguf(models_dir))
    kinds = {name: kind for name, _shape, kind in read_header(q8).tensors}
    assert kinds["blk.0.ffn_gate_inp.weight"] == GGMLQuantizationType.F32
    assert kinds["blk.0.ffn_gate_up_exps.weight"] == GGMLQuantizationType.Q8_0
    found = check(q8, moe_model, n=16, threads=2)
    assert sum(found.forced) / 48 >= MIN_AGREEMENT["q8_0"]  # measured: 48 (2 near ties)


def test_a_k_quant_is_made_by_llama_cpp_and_passes(
    f16: Path, moe_model: Path, tmp_path: Path
) -> None:
    """llama.cpp's quantizer takes the experts; at the tiny model's widths (64 and 32, not
    rows of 256) it falls back to its legacy types, as for any tiny model."""
    needs_llama_cpp()
    quantized = tmp_path / "moe-q4_k_m.gguf"
    gguf.quantize(f16, quantized, "q4_k_m", threads=2)
    assert gguf.describe(quantized).file_type == "q4_k_m"
    found = check(quantized, moe_model, n=16, threads=2)
    assert sum(found.forced) / 48 >= MIN_AGREEMENT["q4_k_m"]  # measured: 48 (3 near ties)


def test_the_26b_a4b_is_offered_as_gguf_sized_with_its_experts(f16: Path) -> None:
    tiny = catalog().get(MODEL_ID)
    large = catalog().get("gemma-4-26b-a4b-it")
    assert tiny is not None and large is not None and large.architecture.experts == 128
    assert gguf_refusal(large) is None and gguf_refusal(tiny) is None
    assert abs(gguf_bytes(tiny, "f16") / f16.stat().st_size - 1) < 0.05
    # 25.8B weights, 22.8B of them experts, at about 4.9 bits: 16.8 GB with the projector (the
    # experts counted like the embedding, at q6_k's bits, made it 21.5 GB).
    assert 15e9 < gguf_bytes(large, "q4_k_m") < 18e9
    assert gguf_bytes(large, "q4_0") < gguf_bytes(large, "q8_0") < gguf_bytes(large, "f16")
