"""PEFT LoRA adapters as llama.cpp GGUF LoRA adapters (`export.gguf_lora`), checked in their
consumer: llama.cpp loads the adapter on the base's GGUF and answers as transformers does with
the PEFT adapter attached (`gguf_check.check_adapter`), its logits as close as the base's, with
PEFT's scale for rsLoRA, alpha != r and per-module patterns; what llama.cpp's LoRA cannot
express is refused with the reason.

The tiny Gemma 3's tests take seconds; Gemma 4's and the Gemma 3 270M's are `slow`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.export.test_gguf import needs_llama_cpp
from tuneforge.export import gguf
from tuneforge.export.gguf_check import (
    check_adapter,
    greedy_tokens_llamacpp,
    prompt_ids,
)
from tuneforge.export.gguf_header import GgufConversionError, read_header
from tuneforge.export.gguf_lora import convert_adapter
from tuneforge.models.tokenizer import ensure_gguf

N = 16
F32 = 0  # gguf.GGMLQuantizationType.F32
#: Gemma 3's seven projections per layer, in llama.cpp's names.
GEMMA3_PROJECTIONS = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}


def make_adapter(base_dir: Path, out: Path, seed: int = 7, **settings: Any) -> Path:
    """A PEFT adapter of `base_dir` made without training: both LoRA matrices random (non-zero
    B, so it changes answers), all linear layers unless `settings` say otherwise."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm

    torch.manual_seed(seed)
    options: dict[str, Any] = {
        "r": 8,
        "lora_alpha": 16,
        "target_modules": "all-linear",
        "init_lora_weights": False,
    }
    options.update(settings)
    tuned = get_peft_model(load_causal_lm(base_dir, torch.float32), LoraConfig(**options))
    tuned.save_pretrained(out)
    return out


def last_logits_hf(base_dir: Path, ids: list[int], adapter: Path | None) -> np.ndarray:
    """transformers' fp32 logits after `ids`, with the PEFT `adapter` attached, if given."""
    import torch
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm

    model: Any = load_causal_lm(base_dir, torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).eval()
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()


def last_logits_llamacpp(model: Path, ids: list[int], adapter: Path | None) -> np.ndarray:
    """llama.cpp's logits after `ids`, with the GGUF LoRA `adapter` on `model`, if given."""
    from tuneforge.models.llamacpp import open_gguf

    lora = {} if adapter is None else {"lora_path": str(adapter)}
    llm = open_gguf(model, n_ctx=256, n_threads=2, logits_all=True, **lora)
    try:
        llm.eval(ids)
        return np.asarray(llm.scores[len(ids) - 1]).copy()
    finally:
        llm.close()


@pytest.fixture(scope="module")
def vocab_gguf(models_dir: Path) -> Path:
    return ensure_gguf(models_dir)


@pytest.fixture(scope="module")
def tiny_f32(tiny_model: Path, vocab_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "tiny-f32.gguf"
    gguf.convert(tiny_model, out, "f32", name="tiny", vocab_gguf=vocab_gguf)
    return out


@pytest.fixture(scope="module")
def ids(tiny_model: Path) -> list[list[int]]:
    return prompt_ids(tiny_model)


# -- the tiny Gemma 3 ----------------------------------------------------------------------------


def test_an_adapter_answers_in_llama_cpp_as_in_transformers_with_peft(
    tiny_adapter: Path, tiny_model: Path, tiny_f32: Path, ids: list[list[int]], tmp_path: Path
) -> None:
    needs_llama_cpp()
    out = tmp_path / "adapter.gguf"
    convert_adapter(tiny_adapter, tiny_model, out)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial file left

    header = read_header(out)
    fields = header.fields
    assert fields["general.architecture"] == "gemma3" and fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora" and fields["adapter.lora.alpha"] == 64.0  # r=8
    tensors = {name: (shape, qtype) for name, shape, qtype in header.tensors}
    layers = json.loads((tiny_model / "config.json").read_text())["num_hidden_layers"]
    assert len(tensors) == 2 * len(GEMMA3_PROJECTIONS) * layers
    assert {n.split(".")[2] for n in tensors} == GEMMA3_PROJECTIONS
    base = {name: shape for name, shape, _ in read_header(tiny_f32).tensors}
    a_shape, a_type = tensors["blk.0.attn_q.weight.lora_a"]
    b_shape, b_type = tensors["blk.0.attn_q.weight.lora_b"]
    # llama.cpp's order: A is inputs x rank, B rank x outputs; the base's q is inputs x outputs.
    assert (a_shape[0], b_shape[1]) == base["blk.0.attn_q.weight"]
    assert a_shape[1] == b_shape[0] == 8 and a_type == b_type == F32

    found = check_adapter(tiny_f32, out, tiny_model, tiny_adapter, n=N, threads=2)
    assert found.greedy == [N] * 3 and found.forced == [N] * 3 and found.n == N

    # The adapter matters: without it llama.cpp answers otherwise.
    tuned = greedy_tokens_llamacpp(tiny_f32, ids, N, threads=2, adapter=out)
    assert greedy_tokens_llamacpp(tiny_f32, ids, N, threads=2) != tuned


@pytest.mark.parametrize(
    ("settings", "alpha"),
    [
        # PEFT's scale 16 / sqrt(8); llama.cpp's is alpha / 8.
        pytest.param({"r": 8, "lora_alpha": 16, "use_rslora": True}, 16 * 8**0.5, id="rslora"),
        pytest.param({"r": 4, "lora_alpha": 24}, 24, id="alpha-not-r"),
        # q_proj and down_proj keep PEFT's scale 8 / r at alpha 8; o_proj and one up_proj carry
        # theirs in B.
        pytest.param(
            {
                "r": 8,
                "lora_alpha": 8,
                "rank_pattern": {"q_proj": 2, "down_proj": 16},
                "alpha_pattern": {"o_proj": 40, r"model.layers.1.mlp.up_proj": 3},
            },
            8,
            id="patterns",
        ),
    ],
)
def test_the_adapter_keeps_pefts_scale(
    settings: dict[str, Any],
    alpha: float,
    tiny_model: Path,
    tiny_f32: Path,
    ids: list[list[int]],
    tmp_path: Path,
) -> None:
    """llama.cpp's logits with the adapter are as close to transformers + PEFT as the base's
    are to transformers, far closer than the adapter moves them: a wrong scale would show."""
    needs_llama_cpp()
    adapter = make_adapter(tiny_model, tmp_path / "adapter", **settings)
    out = tmp_path / "adapter.gguf"
    convert_adapter(adapter, tiny_model, out)
    assert read_header(out).fields["adapter.lora.alpha"] == pytest.approx(alpha)
    prompt = ids[0]
    base_hf = last_logits_hf(tiny_model, prompt, None)
    tuned_hf = last_logits_hf(tiny_model, prompt, adapter)
    tuned = last_logits_llamacpp(tiny_f32, prompt, out)
    moved = float(np.abs(tuned_hf - base_hf).max())
    error = float(np.abs(tuned - tuned_hf).max())
    base_error = float(np.abs(last_logits_llamacpp(tiny_f32, prompt, None) - base_hf).max())
    print(f"{settings}: moved {moved:.4f}, error {error:.2e} (base {base_error:.2e})")
    assert error < max(10 * base_error, 1e-3) and error < moved / 100


# -- what cannot be converted --------------------------------------------------------------------


def ia3(base_dir: Path, out: Path) -> Path:
    import torch
    from peft import IA3Config, get_peft_model

    from tuneforge.models.loading import load_causal_lm

    config = IA3Config(target_modules=["q_proj", "down_proj"], feedforward_modules=["down_proj"])
    get_peft_model(load_causal_lm(base_dir, torch.float32), config).save_pretrained(out)
    return out


REFUSED: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("dora", lambda b, o: make_adapter(b, o, use_dora=True), "DoRA"),
    (
        "modules-to-save",
        lambda b, o: make_adapter(b, o, target_modules=["q_proj"], modules_to_save=["lm_head"]),
        r"trains whole layers .*modules_to_save",
    ),
    ("bias", lambda b, o: make_adapter(b, o, bias="lora_only"), "trains biases"),
    (
        "embedding",
        lambda b, o: make_adapter(b, o, target_modules=["embed_tokens", "q_proj"]),
        "token embedding",
    ),
    ("head", lambda b, o: make_adapter(b, o, target_modules=["lm_head"]), "output head"),
    ("ia3", ia3, "llama.cpp runs LoRA adapters; this adapter is IA3"),
]


@pytest.mark.parametrize(("made", "reason"), [pytest.param(m, r, id=i) for i, m, r in REFUSED])
def test_what_llama_cpps_lora_cannot_express_is_refused_with_the_reason(
    made: Callable[[Path, Path], Path], reason: str, tiny_model: Path, tmp_path: Path
) -> None:
    adapter = made(tiny_model, tmp_path / "adapter")
    with pytest.raises(GgufConversionError, match=reason):
        convert_adapter(adapter, tiny_model, tmp_path / "out" / "adapter.gguf")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_vision_gemmas_language_model_adapts_and_its_image_encoder_is_refused(
    tiny_vision_model: Path, tmp_path: Path
) -> None:
    text = make_adapter(
        tiny_vision_model, tmp_path / "text", target_modules=r".*language_model.*\.(q|down)_proj"
    )
    out = tmp_path / "text.gguf"
    convert_adapter(text, tiny_vision_model, out)
    names = {name for name, _shape, _type in read_header(out).tensors}
    assert {"blk.0.attn_q.weight.lora_a", "blk.1.ffn_down.weight.lora_b"} <= names
    assert all(name.startswith("blk.") for name in names)

    tower = make_adapter(
        tiny_vision_model, tmp_path / "tower", target_modules=r".*vision_tower.*\.q_proj"
    )
    with pytest.raises(GgufConversionError, match=r"image side \(.*vision_tower"):
        convert_adapter(tower, tiny_vision_model, tmp_path / "tower.gguf")
    assert not (tmp_path / "tower.gguf").exists()


def test_an_adapter_of_another_base_or_no_adapter_is_refused(
    tiny_adapter: Path, tiny_model: Path, tiny_gemma4_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(GgufConversionError, match="does not fit the base model"):
        convert_adapter(tiny_adapter, tiny_gemma4_model, tmp_path / "x.gguf")
    with pytest.raises(GgufConversionError, match="is not a PEFT LoRA adapter"):
        convert_adapter(tiny_model, tiny_model, tmp_path / "x.gguf")
    assert list(tmp_path.iterdir()) == []


# -- Gemma 4 -------------------------------------------------------------------------------------

#: The tiny Gemma 4's decoder projections, per-layer-input gate and projection included.
GEMMA4_TARGETS = (
    r"model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj"
    r"|per_layer_input_gate|per_layer_projection)"
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_adapter_of_gemma_4_answers_in_llama_cpp_as_in_transformers_with_peft(
    tiny_gemma4_model: Path, vocab_gguf: Path, tmp_path: Path
) -> None:
    needs_llama_cpp()
    base = tmp_path / "tiny-gemma4-f32.gguf"
    gguf.convert(tiny_gemma4_model, base, "f32", name="tiny", vocab_gguf=vocab_gguf)
    adapter = make_adapter(
        tiny_gemma4_model, tmp_path / "adapter", r=4, lora_alpha=8, target_modules=GEMMA4_TARGETS
    )
    out = tmp_path / "adapter.gguf"
    convert_adapter(adapter, tiny_gemma4_model, out)
    header = read_header(out)
    assert header.fields["general.architecture"] == "gemma4"
    parts = {name.split(".")[2] for name, _shape, _type in header.tensors}
    assert parts == GEMMA3_PROJECTIONS | {"inp_gate", "proj"}

    found = check_adapter(base, out, tiny_gemma4_model, adapter, n=N, threads=2)
    assert found.greedy == [N] * 3 and found.forced == [N] * 3
    prompt = prompt_ids(tiny_gemma4_model)[0]
    tuned_hf = last_logits_hf(tiny_gemma4_model, prompt, adapter)
    moved = float(np.abs(tuned_hf - last_logits_hf(tiny_gemma4_model, prompt, None)).max())
    error = float(np.abs(last_logits_llamacpp(base, prompt, out) - tuned_hf).max())
    print(f"Gemma 4: moved {moved:.4f}, error {error:.2e}")
    assert error < moved / 100

    # The one projection llama.cpp's Gemma 4 computes without adapters.
    projection = make_adapter(
        tiny_gemma4_model, tmp_path / "projection", target_modules=["per_layer_model_projection"]
    )
    with pytest.raises(GgufConversionError, match="per_layer_model_projection"):
        convert_adapter(projection, tiny_gemma4_model, tmp_path / "projection.gguf")


# -- Gemma 3 270M --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)  # measured: 452 s on 2 busy cores (load 9.5)
def test_an_adapter_of_gemma_270m_on_the_bundled_q4_k_m_passes_its_check(
    models_dir: Path, vocab_gguf: Path, tmp_path: Path
) -> None:
    """The fast path as chat uses it: the bundled Q4_K_M file as the base, a random LoRA of
    r=8 on every linear layer (alpha 2: it changes every answer, which stay sentences) as the
    fine-tune. Measured: forced [16, 16, 16] with 2 near ties, greedy [16, 16, 16]."""
    needs_llama_cpp()
    from tuneforge.models.catalog import catalog
    from tuneforge.models.loading import model_dir

    entry = catalog().get("gemma-3-270m")
    assert entry is not None
    base_dir = model_dir(entry, models_dir)
    adapter = make_adapter(base_dir, tmp_path / "adapter", r=8, lora_alpha=2)
    out = tmp_path / "adapter.gguf"
    convert_adapter(adapter, base_dir, out)

    found = check_adapter(vocab_gguf, out, base_dir, adapter, n=N, threads=2)
    print(f"Gemma 3 270M + LoRA on Q4_K_M: {found}")
    assert found.forced == [N] * 3 and found.near_ties <= 4
    ids = prompt_ids(base_dir)
    tuned = greedy_tokens_llamacpp(vocab_gguf, ids, N, threads=2, adapter=out)
    base = greedy_tokens_llamacpp(vocab_gguf, ids, N, threads=2)
    assert all(a != b for a, b in zip(tuned, base, strict=True))  # every answer changed
