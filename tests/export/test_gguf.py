"""GGUF export, checked in its consumer: every file is loaded by llama.cpp (llama-cpp-python) and
its greedy tokens are compared with transformers' on the same token ids (`gguf_check`).

Converted files are shared per module. The tiny model's tests take seconds; the Gemma 3 270M
ones (`slow`) convert a 1 GB model three ways and run it in both engines (about a minute).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from tuneforge.export import gguf
from tuneforge.export.gguf import GgufConversionError
from tuneforge.export.gguf_check import (
    PROMPTS,
    agreement,
    compare,
    greedy_tokens_hf,
    greedy_tokens_llamacpp,
    prompt_ids,
)
from tuneforge.export.gguf_header import read_header
from tuneforge.models.tokenizer import ensure_gguf

N = 16
F32, F16, Q4_0, Q5_0, Q8_0 = 0, 1, 2, 6, 8  # gguf.GGMLQuantizationType values


def needs_llama_cpp() -> None:
    pytest.importorskip("llama_cpp", reason="the gguf extra is not installed")


def safetensors_keys(model_dir: Path) -> list[str]:
    with (model_dir / "model.safetensors").open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return [k for k in json.loads(handle.read(length)) if k != "__metadata__"]


def types_of(path: Path) -> dict[str, int]:
    return {name: qtype for name, _shape, qtype in read_header(path).tensors}


def link_model(source: Path, target: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A copy of a model directory whose weights are a symlink (they are never written)."""
    target.mkdir(parents=True)
    for file in source.iterdir():
        if file.name in skip or not file.is_file():
            continue
        if file.suffix == ".safetensors":
            (target / file.name).symlink_to(file)
        else:
            shutil.copyfile(file, target / file.name)
    return target


@pytest.fixture(scope="module")
def vocab_gguf(models_dir: Path) -> Path:
    return ensure_gguf(models_dir)


@pytest.fixture(scope="module")
def ids(tiny_model: Path) -> list[list[int]]:
    """The prompts as token ids: every model here has the real Gemma 3 tokenizer."""
    return prompt_ids(tiny_model)


@pytest.fixture(scope="module")
def tiny_f16(
    tiny_model: Path, vocab_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[tuple[float, str]]]:
    out = tmp_path_factory.mktemp("tiny") / "tiny-f16.gguf"
    reports: list[tuple[float, str]] = []
    gguf.convert(
        tiny_model,
        out,
        "f16",
        name="tiny",
        vocab_gguf=vocab_gguf,
        progress=lambda f, m: reports.append((f, m)),
    )
    return out, reports


# -- the tiny model ------------------------------------------------------------------------------


def test_f16_of_the_tiny_model_answers_like_transformers(
    tiny_f16: tuple[Path, list[tuple[float, str]]], tiny_model: Path, ids: list[list[int]]
) -> None:
    needs_llama_cpp()
    path, reports = tiny_f16
    assert agreement([1, 2, 3], [1, 2, 4]) == 2 and agreement([5], [5, 6]) == 1
    assert compare(path, tiny_model, n=N, threads=2) == [N] * 3

    summary = gguf.describe(path)
    assert (summary.architecture, summary.file_type) == ("gemma3", "f16")
    assert summary.tensor_count == len(safetensors_keys(tiny_model)) == 28
    assert summary.has_tokenizer and summary.vocab_size == 262_144 and summary.has_chat_template
    assert summary.size_bytes == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 28
    types = types_of(path)
    assert types["token_embd.weight"] == F16 and types["blk.0.attn_q.weight"] == F16
    assert types["blk.0.attn_norm.weight"] == F32 and types["output_norm.weight"] == F32

    fields = read_header(path).fields
    assert fields["gemma3.attention.sliding_window_pattern"] == [True, False]  # not 5 in 6
    assert fields["gemma3.rope.freq_base"] == 1e6 and fields["gemma3.rope.freq_base_swa"] == 1e4
    special = {k: fields[f"tokenizer.ggml.{k}"] for k in ("bos_token_id", "eos_token_id",
               "padding_token_id", "unknown_token_id", "eot_token_id")}  # fmt: skip
    assert special == {"bos_token_id": 2, "eos_token_id": 1, "padding_token_id": 0,
                       "unknown_token_id": 3, "eot_token_id": 106}  # fmt: skip
    assert fields["tokenizer.ggml.add_bos_token"] and not fields["tokenizer.ggml.add_eos_token"]


def test_llama_cpp_tokenizes_like_transformers(
    tiny_f16: tuple[Path, list[tuple[float, str]]], tiny_model: Path, ids: list[list[int]]
) -> None:
    """The vocabulary borrowed from the bundled GGUF tokenizes like the directory's own."""
    needs_llama_cpp()
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    llm = Llama(model_path=str(tiny_f16[0]), vocab_only=True, verbose=False)
    texts = [*PROMPTS, "Hello  world!\n\n\tDer Käse kostet 3,50 €.   東京タワー 🙂 <end_of_turn>"]
    for text in texts:
        expected = tokenizer.encode(text, add_special_tokens=False).ids
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == expected, text
    assert [llm.tokenize(p.encode(), add_bos=False, special=True) for p in PROMPTS] == ids
    llm.close()


@pytest.fixture(scope="module")
def perturbed(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "fine-tune" of the tiny model: noise on one q_proj and on RMSNorm weights, and an
    output head of its own (untied from the embedding)."""
    import torch

    from tuneforge.models.loading import load_causal_lm

    model: Any = load_causal_lm(tiny_model, torch.float32)
    generator = torch.Generator().manual_seed(11)

    def noise(tensor: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.randn(tensor.shape, generator=generator) * scale

    with torch.no_grad():
        layer = model.model.layers[1]
        layer.self_attn.q_proj.weight += noise(layer.self_attn.q_proj.weight, 0.5)
        layer.self_attn.q_norm.weight += noise(layer.self_attn.q_norm.weight, 1.0)
        layer.post_feedforward_layernorm.weight += noise(layer.input_layernorm.weight, 1.0)
        model.model.norm.weight += noise(model.model.norm.weight, 1.0)
        head = model.model.embed_tokens.weight.detach().clone()
        model.lm_head.weight = torch.nn.Parameter(head + noise(head, 0.2))
    model.config.tie_word_embeddings = False
    out = tmp_path_factory.mktemp("perturbed") / "model"
    model.save_pretrained(out)
    for file in tiny_model.iterdir():
        if not (out / file.name).exists():
            shutil.copyfile(file, out / file.name)
    return out


def test_a_fine_tune_with_changed_norms_and_its_own_head_converts_exactly(
    perturbed: Path,
    tiny_model: Path,
    vocab_gguf: Path,
    ids: list[list[int]],
    tmp_path: Path,
) -> None:
    needs_llama_cpp()
    assert "lm_head.weight" in safetensors_keys(perturbed)
    out = tmp_path / "tuned.gguf"
    gguf.convert(perturbed, out, "f16", name="tuned", vocab_gguf=vocab_gguf)
    assert "output.weight" in types_of(out)
    assert gguf.describe(out).tensor_count == len(safetensors_keys(perturbed)) == 29

    expected = greedy_tokens_hf(perturbed, ids, N)
    assert expected != greedy_tokens_hf(tiny_model, ids, N)  # the changes do change answers
    found = greedy_tokens_llamacpp(out, ids, N, threads=2)
    assert [agreement(a, b) for a, b in zip(expected, found, strict=True)] == [N] * 3


@pytest.mark.parametrize("outtype", ["bf16", "q8_0", "q5_0", "q4_0"])
def test_in_process_types_of_the_tiny_model_load_and_generate(
    outtype: gguf.InProcessType,
    tiny_model: Path,
    vocab_gguf: Path,
    ids: list[list[int]],
    tmp_path: Path,
) -> None:
    needs_llama_cpp()
    out = tmp_path / f"tiny-{outtype}.gguf"
    gguf.convert(tiny_model, out, outtype, name="tiny", vocab_gguf=vocab_gguf)
    assert gguf.describe(out).file_type == outtype
    types = types_of(out)
    matrix = {"bf16": 30, "q8_0": Q8_0, "q5_0": Q5_0, "q4_0": Q4_0}[outtype]
    assert types["blk.0.ffn_down.weight"] == matrix  # rows of 128: whole blocks of 32
    assert types["blk.0.ffn_norm.weight"] == F32
    # The tied embedding is also the output head: 8 bits in the 4- and 5-bit types.
    head = {"q5_0": Q8_0, "q4_0": Q8_0}.get(outtype, matrix)
    assert types["token_embd.weight"] == head
    found = greedy_tokens_llamacpp(out, ids[:1], N, threads=2)
    assert len(found[0]) == N


# -- what cannot be converted --------------------------------------------------------------------


def test_a_gemma_3n_is_refused_with_a_reason(tmp_path: Path, vocab_gguf: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["Gemma3nForConditionalGeneration"], "model_type": "gemma3n"})
    )
    with pytest.raises(GgufConversionError, match=r"Gemma3ForConditionalGeneration.*Gemma3n"):
        gguf.convert(tmp_path, tmp_path / "x.gguf", "f16", name="x", vocab_gguf=vocab_gguf)
    assert not (tmp_path / "x.gguf").exists()


def test_other_architectures_and_missing_files_are_refused(
    tmp_path: Path, tiny_model: Path, vocab_gguf: Path
) -> None:
    def convert(model_dir: Path) -> None:
        gguf.convert(model_dir, tmp_path / "x.gguf", "q8_0", name="x", vocab_gguf=vocab_gguf)

    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    )
    with pytest.raises(GgufConversionError, match=r"Gemma3ForCausalLM.*LlamaForCausalLM"):
        convert(llama)
    with pytest.raises(GgufConversionError, match="does not exist"):
        convert(tmp_path / "nowhere")
    weightless = link_model(tiny_model, tmp_path / "weightless", skip=("model.safetensors",))
    with pytest.raises(GgufConversionError, match=r"no .*safetensors weights"):
        convert(weightless)
    tokenless = link_model(tiny_model, tmp_path / "tokenless", skip=("tokenizer.json",))
    with pytest.raises(GgufConversionError, match="has no tokenizer"):
        convert(tokenless)
    with pytest.raises(GgufConversionError, match="no reference GGUF"):
        gguf.convert(tiny_model, tmp_path / "x.gguf", "f16", name="x")
    with pytest.raises(GgufConversionError, match="Unknown GGUF type"):
        gguf.convert(tiny_model, tmp_path / "x.gguf", "q4_k_m", name="x")  # type: ignore[arg-type]
    assert not (tmp_path / "x.gguf").exists()


def test_a_vocabulary_that_does_not_match_the_reference_is_refused(
    tmp_path: Path, tiny_model: Path, vocab_gguf: Path
) -> None:
    data = json.loads((tiny_model / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    # Another tokenizer of the same size: two ordinary words trade ids.
    vocab["▁cat"], vocab["▁dog"] = vocab["▁dog"], vocab["▁cat"]
    swapped = link_model(tiny_model, tmp_path / "swapped", skip=("tokenizer.json",))
    (swapped / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(GgufConversionError, match=r"does not match the vocabulary.*▁(cat|dog)"):
        gguf.convert(swapped, tmp_path / "x.gguf", "f16", name="x", vocab_gguf=vocab_gguf)

    vocab["▁cat"], vocab["▁dog"] = vocab["▁dog"], vocab["▁cat"]
    last = max(data["added_tokens"], key=lambda t: t["id"])
    data["added_tokens"].remove(last)  # one token fewer
    vocab.pop(last["content"], None)
    smaller = link_model(tiny_model, tmp_path / "smaller", skip=("tokenizer.json",))
    (smaller / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(GgufConversionError, match="262143 tokens where it has 262144"):
        gguf.convert(smaller, tmp_path / "x.gguf", "f16", name="x", vocab_gguf=vocab_gguf)
    assert not (tmp_path / "x.gguf").exists()

    # A token added after the reference's (as a vision Gemma's <image_soft_token>) is allowed;
    # past the embedding's last row it is left out: llama.cpp never reads it as text.
    data["added_tokens"].append(last)
    extra = {**last, "id": last["id"] + 1, "content": "<my_token>"}
    data["added_tokens"].append(extra)
    larger = link_model(tiny_model, tmp_path / "larger", skip=("tokenizer.json",))
    (larger / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    gguf.convert(larger, tmp_path / "x.gguf", "f16", name="x", vocab_gguf=vocab_gguf)
    tokens = read_header(tmp_path / "x.gguf").fields["tokenizer.ggml.tokens"]
    assert len(tokens) == 262144 and "<my_token>" not in tokens


def test_k_quants_need_llama_cpp_and_an_unquantized_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vocab_gguf: Path
) -> None:
    with pytest.raises(GgufConversionError, match="no GGUF file"):
        gguf.quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf", "q6_k")
    with pytest.raises(GgufConversionError, match="already quantized"):
        gguf.quantize(vocab_gguf, tmp_path / "x.gguf", "q4_k_m")  # the bundled Q4_K_M file
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # an import of it now fails
    with pytest.raises(GgufConversionError, match=r"pip install 'tuneforge\[gguf\]'"):
        gguf.quantize(vocab_gguf, tmp_path / "x.gguf", "q4_k_m")
    assert list(tmp_path.iterdir()) == []


def test_a_sentencepiece_tokenizer_is_used_and_padded_to_the_embedding(
    tmp_path: Path, tiny_model: Path
) -> None:
    """A directory with Google's kind of tokenizer.model needs no reference vocabulary; a
    vocabulary smaller than the embedding is padded with unused tokens."""
    needs_llama_cpp()
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["The quick brown fox jumps over the lazy dog."] * 50),
        model_writer=model,
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        hard_vocab_limit=False,
        minloglevel=2,
        **{f"{name}_id": i for i, name in enumerate(["pad", "eos", "bos", "unk"])},
        **{f"{name}_piece": f"<{name}>" for name in ["pad", "eos", "bos", "unk"]},
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
    )
    directory = link_model(tiny_model, tmp_path / "sp", skip=("tokenizer.json",))
    (directory / "tokenizer.model").write_bytes(model.getvalue())
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue())
    out = tmp_path / "sp.gguf"
    gguf.convert(directory, out, "f16", name="sp")

    fields = read_header(out).fields
    tokens, kinds = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    n = pieces.vocab_size()
    assert len(tokens) == 262_144 and n < 1000
    assert tokens[:n] == [pieces.id_to_piece(i) for i in range(n)]
    assert tokens[n] == "<unused0>" and set(kinds[n:]) == {5}  # gguf.TokenType.UNUSED
    assert fields["tokenizer.ggml.eot_token_id"] == 5 and fields["tokenizer.ggml.bos_token_id"] == 2
    from llama_cpp import Llama

    llm = Llama(model_path=str(out), vocab_only=True, verbose=False)
    text = "The lazy fox"
    assert llm.tokenize(text.encode(), add_bos=False) == pieces.encode(text)
    llm.close()
    assert len(greedy_tokens_llamacpp(out, [[2, 4, 10, 20]], 4, threads=2)[0]) == 4


# -- Gemma 3 270M --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma(models_dir: Path) -> Path:
    from tuneforge.models.catalog import catalog
    from tuneforge.models.loading import model_dir

    entry = catalog().get("gemma-3-270m")
    assert entry is not None
    return model_dir(entry, models_dir)  # converted once, cached between runs


@pytest.fixture(scope="module")
def gemma_expected(gemma: Path, ids: list[list[int]]) -> list[list[int]]:
    return greedy_tokens_hf(gemma, ids, N)


@pytest.fixture(scope="module")
def gemma_f16(gemma: Path, vocab_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gemma") / "gemma-f16.gguf"
    gguf.convert(gemma, out, "f16", name="Gemma 3 270M", vocab_gguf=vocab_gguf)
    return out


def run(path: Path, ids: list[list[int]], expected: list[list[int]]) -> list[int]:
    found = greedy_tokens_llamacpp(path, ids, N, threads=2)
    assert [len(t) for t in found] == [N] * len(ids)
    result = [agreement(a, b) for a, b in zip(expected, found, strict=True)]
    print(f"{path.name}: greedy agreement {result} of {N}")
    return result


@pytest.mark.slow
def test_f16_of_gemma_270m_answers_like_transformers(
    gemma: Path, gemma_f16: Path, gemma_expected: list[list[int]], ids: list[list[int]]
) -> None:
    needs_llama_cpp()
    assert prompt_ids(gemma) == ids
    assert run(gemma_f16, ids, gemma_expected) == [N] * 3
    summary = gguf.describe(gemma_f16)
    assert (summary.architecture, summary.file_type) == ("gemma3", "f16")
    assert summary.tensor_count == len(safetensors_keys(gemma)) == 236
    assert summary.has_tokenizer and summary.vocab_size == 262_144
    template = read_header(gemma_f16).fields["tokenizer.chat_template"]
    assert summary.has_chat_template
    assert template == (gemma / "chat_template.jinja").read_text(encoding="utf-8")


@pytest.mark.slow
def test_q8_0_of_gemma_270m_nearly_answers_like_transformers(
    gemma: Path,
    vocab_gguf: Path,
    gemma_expected: list[list[int]],
    ids: list[list[int]],
    tmp_path: Path,
) -> None:
    needs_llama_cpp()
    out = tmp_path / "gemma-q8_0.gguf"
    gguf.convert(gemma, out, "q8_0", name="Gemma 3 270M", vocab_gguf=vocab_gguf)
    assert gguf.describe(out).file_type == "q8_0"
    assert types_of(out)["token_embd.weight"] == Q8_0
    assert all(found >= 14 for found in run(out, ids, gemma_expected))


@pytest.mark.slow
def test_q4_k_m_of_gemma_270m_is_made_by_llama_cpp_and_runs(
    gemma: Path,
    gemma_f16: Path,
    gemma_expected: list[list[int]],
    ids: list[list[int]],
    tmp_path: Path,
) -> None:
    needs_llama_cpp()
    out = tmp_path / "gemma-q4_k_m.gguf"
    gguf.quantize(gemma_f16, out, "q4_k_m", threads=2)
    summary = gguf.describe(out)
    assert (summary.file_type, summary.tensor_count) == ("q4_k_m", 236)
    assert summary.has_chat_template and summary.vocab_size == 262_144
    assert summary.size_bytes < gguf.describe(gemma_f16).size_bytes / 2
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert sum(run(out, ids, gemma_expected)) >= N  # it answers, mostly like the original


def test_a_gguf_that_answers_differently_fails_its_check(
    tiny_f16: tuple[Path, list[tuple[float, str]]], perturbed: Path, tiny_model: Path
) -> None:
    """The export's built-in check compares llama.cpp with transformers on the model it was
    made from: held against another model's weights, it fails and carries the numbers."""
    needs_llama_cpp()
    from tuneforge.export.build import VerificationFailed, check_gguf

    def progress(fraction: float, message: str) -> None:
        pass

    path, _ = tiny_f16
    passed = check_gguf(path, tiny_model, "f16", 2, progress)
    assert passed["passed"] and passed["greedy_agreement"] == [16, 16, 16]
    assert passed["forced_agreement"] == [16, 16, 16] and passed["near_ties"] == 0
    with pytest.raises(VerificationFailed, match="picks transformers' token at") as failed:
        check_gguf(path, perturbed, "f16", 2, progress)
    numbers = failed.value.verification["gguf"]
    assert numbers["passed"] is False
    assert numbers["agreement_share"] < 0.9 and len(numbers["forced_agreement"]) == 3


@pytest.mark.parametrize("flags", ["avx512f avx512_vnni", "avx512f amx_tile amx_int8"])
def test_llama_cpp_keeps_weights_off_extra_buffers_on_amx_cpus(
    tiny_f16: tuple[Path, list[tuple[float, str]]], monkeypatch: pytest.MonkeyPatch, flags: str
) -> None:
    pytest.importorskip("llama_cpp")
    from llama_cpp import llama_cpp

    from tuneforge.models import llamacpp

    monkeypatch.setattr(llamacpp, "cpu_flags", lambda: frozenset(flags.split()))
    llamacpp.extra_buffers_safe.cache_clear()
    defaults = llama_cpp.llama_model_default_params
    try:
        llm = llamacpp.open_gguf(tiny_f16[0], n_ctx=64, n_threads=1)
        assert llm.model_params.use_extra_bufts is ("amx_int8" not in flags)
        assert len(llm.tokenize(b"hello")) > 0
        llm.close()
    finally:
        llamacpp.extra_buffers_safe.cache_clear()
    assert llama_cpp.llama_model_default_params is defaults  # put back for everyone else
