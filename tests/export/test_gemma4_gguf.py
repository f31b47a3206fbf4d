"""GGUF export of a Gemma 4 (tiny-random-gemma4: per-layer embeddings, layers that reuse earlier
layers' keys and values, wider full-attention heads whose keys double as values, Gemma 4's image
encoder), checked in its consumer: the text model runs in llama.cpp's `gemma4` and answers like
transformers, and the `gemma4v` projector carries an image through llama.cpp's multimodal path as
transformers does. A file without the full layers' RoPE factors, and a projector that garbles
the image, are caught.

Converted files are shared per module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.export.test_gguf import needs_llama_cpp
from tests.export.test_vision_gguf import text_and_projector
from tuneforge.export import gguf, gguf_gemma4, mmproj_gemma4
from tuneforge.export.build import MIN_AGREEMENT
from tuneforge.export.gguf import GgufConversionError
from tuneforge.export.gguf_check import check, prompt_ids
from tuneforge.export.gguf_header import read_header
from tuneforge.export.spec import gguf_refusal
from tuneforge.export.vision_export import MAX_IMAGE_DIFF_SHARE, check_projector
from tuneforge.models.catalog import catalog
from tuneforge.models.chat_template import GEMMA_4
from tuneforge.models.tokenizer import ensure_gguf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def files(
    tiny_gemma4_model: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The tiny Gemma 4 as an f16 text GGUF and its f16 projector."""
    out = tmp_path_factory.mktemp("gemma4")
    return text_and_projector(tiny_gemma4_model, models_dir, out, mmproj_gemma4.convert_projector)


def test_the_text_model_tells_llama_cpp_gemma_4s_layout(files) -> None:
    model, _ = files
    header = read_header(model)
    fields = header.fields
    assert fields["general.architecture"] == "gemma4"
    assert fields["gemma4.attention.key_length"] == 64  # the full layers' wider heads
    assert fields["gemma4.attention.key_length_swa"] == 32
    assert fields["gemma4.attention.head_count_kv"] == [1, 1, 1, 1]
    assert fields["gemma4.attention.sliding_window_pattern"] == [True, False, True, False]
    assert fields["gemma4.attention.shared_kv_layers"] == 2
    assert fields["gemma4.feed_forward_length"] == [128, 128, 256, 256]  # double-wide at the end
    assert fields["gemma4.embedding_length_per_layer_input"] == 8
    assert fields["gemma4.final_logit_softcapping"] == 30.0
    assert fields["gemma4.rope.freq_base"] == 1_000_000.0
    assert fields["gemma4.rope.freq_base_swa"] == 10_000.0
    assert fields["tokenizer.chat_template"] == GEMMA_4.jinja
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[105] == "<|turn>" and tokens[106] == "<turn|>"  # Gemma 4's, at their ids
    assert tokens[258880] == "<|image|>" and len(tokens) == 262144
    assert fields["tokenizer.ggml.eot_token_id"] == 106
    names = {name for name, _shape, _type in header.tensors}
    assert {"per_layer_token_embd.weight", "per_layer_model_proj.weight", "blk.3.inp_gate.weight",
            "blk.0.layer_output_scale.weight", "rope_freqs.weight"} <= names  # fmt: skip
    assert "blk.0.attn_v.weight" in names and "blk.1.attn_v.weight" not in names  # k = v
    assert "blk.2.attn_k.weight" not in names  # reuses layer 0's keys and values
    assert not [n for n in names if n.startswith(("v.", "mm."))]


def test_the_full_layers_rotate_a_quarter_of_each_head(tiny_gemma4_model: Path) -> None:
    config = json.loads((tiny_gemma4_model / "config.json").read_text())
    hyper = gguf_gemma4.hyper_parameters(gguf_gemma4.text_config(config))
    freqs = gguf_gemma4.rope_freqs(hyper)
    want = [1.0] * 8 + [gguf_gemma4.NO_ROTATION] * 24  # 64-wide heads, a quarter rotated
    assert freqs.dtype == np.float32 and np.array_equal(freqs, np.asarray(want, np.float32))


def test_f16_answers_like_transformers(files, tiny_gemma4_model: Path) -> None:
    needs_llama_cpp()
    model, _ = files
    found = check(model, tiny_gemma4_model, n=16, threads=2)
    assert found.greedy == [16, 16, 16] and found.forced == [16, 16, 16]


def _logit_diff(model: Path, model_dir: Path) -> float:
    """The largest difference between llama.cpp's and transformers' logits at every position of
    the check's prompts."""
    import torch

    from tuneforge.models.llamacpp import open_gguf
    from tuneforge.models.loading import load_causal_lm

    reference = load_causal_lm(model_dir, torch.float32)
    llm = open_gguf(model, n_ctx=512, n_threads=2, logits_all=True)
    worst = 0.0
    try:
        for ids in prompt_ids(model_dir):
            llm.reset()
            llm.eval(ids)
            with torch.inference_mode():
                want = reference(input_ids=torch.tensor([ids])).logits[0].numpy()
            worst = max(worst, float(np.abs(np.asarray(llm.scores[: len(ids)]) - want).max()))
    finally:
        llm.close()
    return worst


def test_every_logit_matches_and_the_rope_factors_matter(
    files, tiny_gemma4_model: Path, models_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """The greedy comparison of a random model is blunt (its answers barely depend on where
    a token stands); the logits are not: f16 stays within rounding of transformers, a file
    whose full layers rotate every dimension does not."""
    needs_llama_cpp()
    model, _ = files
    assert _logit_diff(model, tiny_gemma4_model) < 0.25  # measured: 0.095 (logits up to 8.1)
    monkeypatch.setattr(gguf_gemma4, "_rope_freqs", lambda _full, width: [1.0] * (width // 2))
    rotating = tmp_path / "rotating.gguf"
    gguf.convert(tiny_gemma4_model, rotating, "f16", name="x", vocab_gguf=ensure_gguf(models_dir))
    assert _logit_diff(rotating, tiny_gemma4_model) > 1.0  # measured: 3.4


def test_a_k_quant_is_made_by_llama_cpp_and_passes(
    files, tiny_gemma4_model: Path, tmp_path: Path
) -> None:
    needs_llama_cpp()
    model, _ = files
    quantized = tmp_path / "tiny-q4_k_m.gguf"
    gguf.quantize(model, quantized, "q4_k_m", threads=2)
    assert gguf.describe(quantized).file_type == "q4_k_m"
    found = check(quantized, tiny_gemma4_model, n=16, threads=2)
    assert sum(found.forced) / 48 >= MIN_AGREEMENT["q4_k_m"]  # measured: 48 (8 near ties)


def test_the_projector_is_llama_cpps_gemma4v(files, tiny_gemma4_model: Path) -> None:
    _, projector = files
    header = read_header(projector)
    fields = header.fields
    assert fields["general.architecture"] == "clip"
    assert fields["clip.projector_type"] == fields["clip.vision.projector_type"] == "gemma4v"
    assert fields["clip.vision.projector.scale_factor"] == 3  # 3 x 3 patches per soft token
    assert fields["clip.vision.patch_size"] == 16
    assert fields["clip.vision.projection_dim"] == 64
    assert fields["clip.vision.image_mean"] == [0.0] * 3  # pixels in [0, 1]
    assert fields["clip.vision.image_std"] == [1.0] * 3
    shapes = {name: shape for name, shape, _type in header.tensors}
    assert shapes["v.patch_embd.weight"] == (16, 16, 3, 32)  # a convolution kernel
    assert shapes["v.position_embd.weight"] == (32, 256, 2)
    assert shapes["v.blk.0.attn_q.input_max"] == (1,)  # the clipped linears' bounds
    assert shapes["mm.input_projection.weight"] == (32, 64)
    assert mmproj_gemma4.structure_problems(projector, tiny_gemma4_model) == []


def test_an_image_reads_through_llama_cpp_as_through_transformers(
    files, tiny_gemma4_model: Path
) -> None:
    needs_llama_cpp()
    model, projector = files
    result, problems = check_projector(model, projector, tiny_gemma4_model, 0.9, threads=2)
    assert problems == []
    assert result["loaded_in_llama_cpp"] and result["same_prompt_tokens"]
    assert result["tokens_per_image"] == 64
    assert result["greedy_agreement"] == 16
    # measured: 0.086 against an image effect of 7.8
    assert result["logit_diff"] < 0.05 * result["image_effect"]


def garbled_projector(model_dir: Path, tmp_path: Path) -> Path:
    """The `mmproj` file of a copy of the Gemma 4 in `model_dir` whose projection into the
    decoder reads its inputs in reverse order: it fits the model, and garbles every image."""
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    weights = load_file(other / "model.safetensors")
    key = "model.embed_vision.embedding_projection.weight"
    weights[key] = weights[key][:, ::-1].copy()
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    wrong = tmp_path / "mmproj-wrong.gguf"
    mmproj_gemma4.convert_projector(other, wrong, "f16", name="wrong")
    return wrong


def test_a_projector_that_garbles_the_image_fails(
    files, tiny_gemma4_model: Path, tmp_path: Path
) -> None:
    needs_llama_cpp()
    model, _ = files
    wrong = garbled_projector(tiny_gemma4_model, tmp_path)
    assert mmproj_gemma4.structure_problems(wrong, tiny_gemma4_model) == []
    result, problems = check_projector(model, wrong, tiny_gemma4_model, 0.9, threads=2)
    assert result["logit_diff"] > MAX_IMAGE_DIFF_SHARE * result["image_effect"]
    assert any("does not carry the image" in p for p in problems)


def test_what_llama_cpp_cannot_run_is_refused_with_a_reason(
    tiny_gemma4_model: Path, tiny_vision_model: Path
) -> None:
    config = gguf_gemma4.text_config(json.loads((tiny_gemma4_model / "config.json").read_text()))
    with pytest.raises(GgufConversionError, match="both directions"):
        gguf_gemma4.hyper_parameters(config | {"use_bidirectional_attention": "all"})
    for model_id in ("gemma-4-e2b-it", "tiny-random-gemma4", "gemma-3-270m"):
        entry = catalog().get(model_id)
        assert entry is not None and gguf_refusal(entry) is None, model_id
    with pytest.raises(GgufConversionError, match="not a Gemma 4 with an image encoder"):
        mmproj_gemma4.vision_numbers(tiny_vision_model)


def test_a_full_fine_tune_exports_its_pair_and_passes_the_checks(
    tiny_gemma4_model: Path, models_dir: Path, tmp_path: Path
) -> None:
    """A full fine-tune's weights (the tiny model's own, as a full fine-tune saves them) go
    through the export's build: no merge, the text file and the projector, both checked (the
    LoRA path runs through the API in test_gemma4_export_api). f16: the random tiny model is
    so sensitive to rounding that its q8_0 text logits already differ from transformers' by
    1.7, and after the image prompt by 2.9, more than a quarter of the image's effect (7.8)."""
    needs_llama_cpp()
    from tuneforge.export.build import Plan, build
    from tuneforge.export.card import CardFacts

    facts = CardFacts(
        name="Full G4", base_model="tiny-random-gemma4", base_name="Tiny random Gemma 4",
        base_hub_id=None, license="Apache-2.0", dataset=None, spec={}, metrics={},
        format="gguf", quantization="f16", vision=True,
    )  # fmt: skip
    plan = Plan(
        format="gguf", quantization="f16", model_kind="full", source=tiny_gemma4_model,
        base_dir=tiny_gemma4_model, base_dtype="float32", vocab_gguf=ensure_gguf(models_dir),
        facts=facts,
    )  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    verification = build(plan, out, lambda _fraction, _message: None)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "full-g4-f16.gguf", "mmproj-full-g4-f16.gguf"
    ]  # fmt: skip
    check = verification["gguf"]
    assert check["architecture"] == "gemma4" and check["passed"] is True
    assert check["image"]["passed"] is True and check["image"]["projector_type"] == "gemma4v"
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "--mmproj mmproj-full-g4-f16.gguf" in readme and "Gemma 4's format" in readme
