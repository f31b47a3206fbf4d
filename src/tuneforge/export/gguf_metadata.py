"""The metadata side of GGUF export (the weights are `tuneforge.export.gguf`): the model's
numbers from config.json, the tokenizer, the chat template, and a fast reader of GGUF headers.

Gemma 3 settings llama.cpp cannot reproduce (another RoPE scaling than linear, an attention scale
other than the one it derives) are refused rather than exported into a model that answers
differently. Which layers use sliding-window attention is written out layer by layer: llama.cpp
otherwise assumes Gemma's five-in-six pattern, which models with fewer than six layers (our tiny
test model) do not follow.

llama.cpp's Gemma tokenizer is sentencepiece-style (`tokenizer.ggml.model = llama`): a list of
pieces with scores and token types. A directory with Google's `tokenizer.model` gives them
directly. Our built-in models carry only a `tokenizer.json` that transformers built from the
bundled Gemma 3 270M GGUF, so their vocabulary is copied back from that GGUF, once the
`tokenizer.json` has been checked to map the same pieces to the same ids. llama.cpp needs as
many tokens as the embedding has rows: a shorter vocabulary is padded with unused tokens.

`read_header` reads a GGUF file's metadata and tensor list without the tensors. `gguf.GGUFReader`
does the same but takes about 20 s for Gemma's 262,144-token vocabulary (it makes a numpy view
per array element); this takes a fraction of a second.
"""

from __future__ import annotations

import functools
import json
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from tuneforge.models.chat_template import GEMMA_4

SPACE = "\u2581"  # sentencepiece's visible space, `▁`
#: Gemma's special tokens, used when `tokenizer_config.json` names none.
DEFAULT_SPECIAL = {"bos": "<bos>", "eos": "<eos>", "unk": "<unk>", "pad": "<pad>"}
END_OF_TURN = "<end_of_turn>"
_UNUSED = re.compile(r"<unused(\d+)>")
_T = gguf.TokenType
_V = gguf.GGUFValueType
_SCALAR_FORMATS = {_V.UINT8: "<B", _V.INT8: "<b", _V.UINT16: "<H", _V.INT16: "<h",
                   _V.UINT32: "<I", _V.INT32: "<i", _V.FLOAT32: "<f", _V.BOOL: "<?",
                   _V.UINT64: "<Q", _V.INT64: "<q", _V.FLOAT64: "<d"}  # fmt: skip


class GgufConversionError(ValueError):
    """A model that cannot become a GGUF file; the message says why, for a person."""


# -- the model's numbers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyper:
    """The numbers llama.cpp needs from config.json."""

    context_length: int
    hidden_size: int
    layers: int
    intermediate_size: int
    heads: int
    kv_heads: int
    head_dim: int
    rms_eps: float
    vocab_rows: int
    sliding_window: int | None
    sliding_layers: list[bool]
    rope_base: float
    rope_base_local: float
    rope_linear_factor: float | None
    final_softcap: float | None
    tied: bool


def read_config(model_dir: Path) -> dict[str, Any]:
    """The config of the Gemma 3 text model in `model_dir`: config.json itself for a
    `Gemma3ForCausalLM`, its `text_config` for a vision Gemma 3 (`Gemma3ForConditionalGeneration`,
    whose image encoder goes to a separate projector file, `export.mmproj`). Other architectures
    are refused with a reason."""
    config = full_config(model_dir)
    architectures = config.get("architectures") or []
    model_type = config.get("model_type")
    if is_vision_gemma3(config):
        text = dict(config.get("text_config") or {})
        text.setdefault("tie_word_embeddings", config.get("tie_word_embeddings", True))
        return text
    if "Gemma3ForCausalLM" not in architectures and model_type != "gemma3_text":
        found = ", ".join(architectures) or model_type or "an unknown architecture"
        raise GgufConversionError(
            "GGUF export supports Gemma 3 models (Gemma3ForCausalLM, and "
            f"Gemma3ForConditionalGeneration with its image encoder); this model is {found}. "
            "TuneForge's GGUF writer does not write Gemma 4's layers (per-layer embeddings, "
            "shared keys and values, wider global heads): export a Gemma 4 fine-tune as merged "
            "or adapter."
        )
    return config


def full_config(model_dir: Path) -> dict[str, Any]:
    """config.json of `model_dir`, or a `GgufConversionError` saying why there is none."""
    file = model_dir / "config.json"
    if not file.is_file():
        what = "has no config.json" if model_dir.is_dir() else "does not exist"
        raise GgufConversionError(f"Cannot export {model_dir} to GGUF: the directory {what}.")
    config: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return config


def is_vision_gemma3(config: dict[str, Any]) -> bool:
    """Whether `config` is a Gemma 3 with a SigLIP image encoder."""
    architectures = config.get("architectures") or []
    return "Gemma3ForConditionalGeneration" in architectures or config.get("model_type") == "gemma3"


def _rope(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The RoPE settings of the full-attention and of the sliding-window layers, from either
    transformers 5's `rope_parameters` or the older `rope_theta`/`rope_scaling` keys."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and "full_attention" in params:
        return params["full_attention"], params.get("sliding_attention") or {}
    full = dict(params or {}) | dict(config.get("rope_scaling") or {})
    full.setdefault("rope_theta", config.get("rope_theta", 1_000_000.0))
    return full, {"rope_theta": config.get("rope_local_base_freq", 10_000.0)}


def hyper_parameters(config: dict[str, Any]) -> Hyper:
    """What llama.cpp needs from `config`; settings it cannot reproduce are refused."""
    layers = int(config["num_hidden_layers"])
    heads = int(config.get("num_attention_heads", 8))
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim", 256))
    types = config.get("layer_types")
    if not types:
        period = int(config.get("sliding_window_pattern") or 6)
        types = ["full_attention" if (i + 1) % period == 0 else "sliding" for i in range(layers)]
    sliding = [not t.startswith("full") for t in types]
    full, local = _rope(config)
    factor = None
    kind = full.get("rope_type") or full.get("type") or "default"
    if kind == "linear":
        factor = float(full["factor"])
    elif kind != "default":
        raise GgufConversionError(f"llama.cpp's Gemma 3 does not support {kind!r} RoPE scaling.")
    if (local.get("rope_type") or "default") != "default":
        raise GgufConversionError("llama.cpp's Gemma 3 does not scale sliding-window RoPE.")
    if config.get("attn_logit_softcapping"):
        raise GgufConversionError("llama.cpp's Gemma 3 has no attention logit soft-capping.")
    # llama.cpp derives the attention scale itself: 1/sqrt(head_dim), or 1/sqrt(hidden/heads)
    # for the 62-layer 27B; a model that scales otherwise would answer differently there.
    scalar = config.get("query_pre_attn_scalar", head_dim)
    expected = hidden // heads if layers == 62 else head_dim
    if scalar != expected:
        raise GgufConversionError(
            f"query_pre_attn_scalar is {scalar}; llama.cpp's Gemma 3 assumes {expected}."
        )
    window = config.get("sliding_window")
    return Hyper(
        context_length=int(config.get("max_position_embeddings", 131_072)),
        hidden_size=hidden,
        layers=layers,
        intermediate_size=int(config["intermediate_size"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads", 4)),
        head_dim=head_dim,
        rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        vocab_rows=int(config["vocab_size"]),
        sliding_window=int(window) if window and any(sliding) else None,
        sliding_layers=sliding,
        rope_base=float(full.get("rope_theta", 1_000_000.0)),
        rope_base_local=float(local.get("rope_theta", 10_000.0)),
        rope_linear_factor=factor,
        final_softcap=config.get("final_logit_softcapping"),
        tied=bool(config.get("tie_word_embeddings", True)),
    )


# -- the tokenizer ---------------------------------------------------------------------------------


@dataclass
class Vocabulary:
    """The `tokenizer.ggml.*` metadata of a GGUF file."""

    tokens: list[str]
    scores: list[float]
    types: list[int]
    model: str = "llama"
    pre: str | None = None
    #: Whether the tokenizer puts a space before the text (Gemma 3's does not).
    add_space_prefix: bool = False
    #: `bos`, `eos`, `unk`, `pad` and `eot` -> token id (those the vocabulary has).
    special: dict[str, int] | None = None

    def add_to(self, writer: gguf.GGUFWriter) -> None:
        """Write the vocabulary and its flags with a `gguf.GGUFWriter`."""
        writer.add_tokenizer_model(self.model)
        if self.pre:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        writer.add_add_space_prefix(self.add_space_prefix)
        for kind, token_id in (self.special or {}).items():
            getattr(writer, f"add_{kind}_token_id")(token_id)  # add_bos_token_id, ...
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)


def vocabulary(model_dir: Path, reference: Path | None, rows: int) -> Vocabulary:
    """The vocabulary of `model_dir`, padded to the embedding's `rows` (see the module doc)."""
    if (model_dir / "tokenizer.model").is_file():
        vocab = _from_sentencepiece(model_dir)
    elif not (model_dir / "tokenizer.json").is_file():
        raise GgufConversionError(
            f"{model_dir} has no tokenizer (tokenizer.model or tokenizer.json) to put in the GGUF."
        )
    elif reference is None:
        raise GgufConversionError(
            f"{model_dir} has no sentencepiece tokenizer.model, and no reference GGUF with the "
            "same vocabulary was given."
        )
    else:
        vocab = _from_reference(reference)
        _check_same(model_dir, reference)
        _add_tokens(vocab, _added_after(model_dir, len(vocab.tokens)), rows)
    if len(vocab.tokens) > rows:
        raise GgufConversionError(
            f"The tokenizer has {len(vocab.tokens)} tokens but the model's embedding only {rows} "
            "rows: they do not belong together."
        )
    _pad(vocab, rows)
    vocab.special = _special_ids(model_dir, vocab.tokens)
    return vocab


def chat_template(model_dir: Path) -> str | None:
    """The directory's chat template: `chat_template.jinja`, `chat_template.json`, or the
    `chat_template` of `tokenizer_config.json` (the default one of a list of named ones)."""
    file = model_dir / "chat_template.jinja"
    if file.is_file():
        return file.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        template = _json(model_dir / name).get("chat_template")
        if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if isinstance(template, str) and template:
            return template
    return None


def _json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        return {}
    data = json.loads(file.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _from_sentencepiece(model_dir: Path) -> Vocabulary:
    from sentencepiece import SentencePieceProcessor

    processor = SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    tokens, scores, types = [], [], []
    for i in range(processor.vocab_size()):
        tokens.append(processor.id_to_piece(i))
        scores.append(float(processor.get_score(i)))
        if processor.is_unknown(i):
            types.append(_T.UNKNOWN)
        elif processor.is_control(i):
            types.append(_T.CONTROL)
        elif processor.is_unused(i):
            types.append(_T.UNUSED)
        elif processor.is_byte(i):
            types.append(_T.BYTE)
        else:
            types.append(_T.NORMAL)
    # sentencepiece's `add_dummy_prefix`, seen from the outside (reading it needs protobuf).
    prefix = processor.encode("x", out_type=str)[:1] in (["\u2581x"], ["\u2581"])
    vocab = Vocabulary(tokens, scores, [int(t) for t in types], add_space_prefix=prefix)
    # Tokens transformers adds on top of (or marks in) the sentencepiece model.
    added = _json(model_dir / "tokenizer_config.json").get("added_tokens_decoder") or {}
    for key, token in sorted(added.items(), key=lambda item: int(item[0])):
        token_id = int(key)
        _pad(vocab, token_id)
        kind = int(_T.CONTROL if token.get("special") else _T.USER_DEFINED)
        if token_id == len(vocab.tokens):
            vocab.tokens.append(token["content"])
            vocab.scores.append(-1000.0)
            vocab.types.append(kind)
        else:
            vocab.tokens[token_id] = token["content"]
            vocab.types[token_id] = kind
    return vocab


def _from_reference(reference: Path) -> Vocabulary:
    if not Path(reference).is_file():
        raise GgufConversionError(f"The reference vocabulary {reference} does not exist.")
    fields = read_header(reference).fields
    keys = gguf.Keys.Tokenizer
    missing = [k for k in (keys.LIST, keys.SCORES, keys.TOKEN_TYPE, keys.MODEL) if k not in fields]
    if missing:
        raise GgufConversionError(f"The reference GGUF {reference.name} has no {missing[0]}.")
    return Vocabulary(
        tokens=list(fields[keys.LIST]),
        scores=[float(s) for s in fields[keys.SCORES]],
        types=[int(t) for t in fields[keys.TOKEN_TYPE]],
        model=str(fields[keys.MODEL]),
        pre=fields.get(keys.PRE),
        add_space_prefix=bool(fields.get(keys.ADD_PREFIX, False)),
    )


def _check_same(model_dir: Path, reference: Path) -> None:
    """Raise unless `model_dir`'s tokenizer.json maps every token of the reference to the same
    id. Spaces are compared as sentencepiece's `▁`: transformers writes Gemma's whitespace
    tokens with `▁` where the GGUF has spaces. Remembered per file version (it takes seconds)."""
    tokenizer = model_dir / "tokenizer.json"
    problem = _compare(str(tokenizer), _version(tokenizer), str(reference), _version(reference))
    if problem:
        raise GgufConversionError(
            f"The tokenizer of {model_dir.name} does not match the vocabulary of "
            f"{reference.name} ({problem}), so the GGUF file cannot borrow it. Add the model's "
            "sentencepiece tokenizer.model to its directory to export it."
        )


def _version(file: Path) -> tuple[int, int]:
    stat = file.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _compare(tokenizer_file: str, _v1: Any, reference: str, _v2: Any) -> str | None:
    """What differs between the two vocabularies (None: nothing)."""
    from tokenizers import Tokenizer

    try:
        vocab = Tokenizer.from_file(tokenizer_file).get_vocab(with_added_tokens=True)
    except Exception as exc:  # the tokenizers library raises plain Exceptions
        return f"its tokenizer.json cannot be read: {exc}"
    tokens = _from_reference(Path(reference)).tokens
    # Tokens added after the reference's (a vision Gemma's `<image_soft_token>`) are allowed.
    shared = sum(1 for token_id in vocab.values() if token_id < len(tokens))
    if shared != len(tokens):
        return f"{shared} tokens where it has {len(tokens)}"
    by_id = [""] * len(tokens)
    for token, token_id in vocab.items():
        if 0 <= token_id < len(tokens):
            by_id[token_id] = token
    for token_id, (ours, theirs) in enumerate(zip(by_id, tokens, strict=True)):
        if ours != theirs and ours.replace(SPACE, " ") != theirs.replace(SPACE, " "):
            return f"id {token_id} is {ours!r} here, {theirs!r} there"
    return None


def _added_after(model_dir: Path, first: int) -> list[tuple[int, str, bool]]:
    """The tokens of `model_dir`'s tokenizer.json from id `first` on: `(id, piece, special)`."""
    added = _json(model_dir / "tokenizer.json").get("added_tokens") or []
    return sorted(
        (int(t["id"]), str(t["content"]), bool(t.get("special")))
        for t in added
        if isinstance(t, dict) and int(t.get("id", -1)) >= first
    )


def _add_tokens(vocab: Vocabulary, added: list[tuple[int, str, bool]], rows: int) -> None:
    """Append `added` tokens that have a row in the embedding. A vision Gemma's image token may
    lie past the last row (transformers replaces it before the lookup): llama.cpp never reads
    it as text, since the projector's embeddings take its places, so it is left out."""
    for token_id, piece, special in added:
        if token_id >= rows:
            continue
        _pad(vocab, token_id)
        vocab.tokens.append(piece)
        vocab.scores.append(-1000.0)
        vocab.types.append(int(_T.CONTROL if special else _T.USER_DEFINED))


def _pad(vocab: Vocabulary, size: int) -> None:
    """Append unused tokens (`<unusedN>`, numbered after the vocabulary's own) up to `size`."""
    if len(vocab.tokens) >= size:
        return
    numbers = [int(m.group(1)) for t in vocab.tokens if (m := _UNUSED.fullmatch(t))]
    first = max(numbers, default=-1) + 1
    missing = size - len(vocab.tokens)
    vocab.tokens += [f"<unused{first + i}>" for i in range(missing)]
    vocab.scores += [-1000.0] * missing
    vocab.types += [int(_T.UNUSED)] * missing


def _special_ids(model_dir: Path, tokens: list[str]) -> dict[str, int]:
    config = _json(model_dir / "tokenizer_config.json")
    wanted = {}
    for kind, default in DEFAULT_SPECIAL.items():
        named = config.get(f"{kind}_token")
        if isinstance(named, dict):
            named = named.get("content")
        wanted[kind] = named if isinstance(named, str) and named else default
    # The end of a turn: Gemma 3's `<end_of_turn>`, or Gemma 4's `<turn|>` at the same id.
    wanted["eot"] = GEMMA_4.end_of_turn if GEMMA_4.end_of_turn in tokens else END_OF_TURN
    ids = {token: i for i, token in enumerate(tokens) if token in wanted.values()}
    return {kind: ids[token] for kind, token in wanted.items() if token in ids}


# -- writing and reading ---------------------------------------------------------------------------


def add_metadata(
    writer: gguf.GGUFWriter,
    hyper: Hyper,
    name: str,
    file_type: gguf.LlamaFileType,
    vocab: Vocabulary,
    template: str | None,
) -> None:
    """Every key of the GGUF file but the tensors', with a `gguf.GGUFWriter`."""
    writer.add_name(name)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(hyper.context_length)
    writer.add_embedding_length(hyper.hidden_size)
    writer.add_block_count(hyper.layers)
    writer.add_feed_forward_length(hyper.intermediate_size)
    writer.add_head_count(hyper.heads)
    writer.add_head_count_kv(hyper.kv_heads)
    writer.add_key_length(hyper.head_dim)
    writer.add_value_length(hyper.head_dim)
    writer.add_layer_norm_rms_eps(hyper.rms_eps)
    writer.add_rope_freq_base(hyper.rope_base)
    if hyper.rope_linear_factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(hyper.rope_linear_factor)
    if hyper.final_softcap:
        writer.add_final_logit_softcapping(float(hyper.final_softcap))
    if hyper.sliding_window is not None:
        writer.add_sliding_window(hyper.sliding_window)
        # Which layers slide: llama.cpp otherwise assumes Gemma's five-in-six, which small
        # models (fewer than six layers) do not follow.
        writer.add_sliding_window_pattern(hyper.sliding_layers)
        writer.add_rope_freq_base_swa(hyper.rope_base_local)
    vocab.add_to(writer)
    if template:
        writer.add_chat_template(template)


@dataclass(frozen=True)
class GgufHeader:
    """A GGUF file's metadata (arrays as lists) and its tensors' names, shapes and types."""

    fields: dict[str, Any]
    #: `(name, shape, gguf.GGMLQuantizationType value)`; shapes in llama.cpp's order.
    tensors: list[tuple[str, tuple[int, ...], int]]


def read_header(path: Path) -> GgufHeader:
    """The metadata and tensor list of the GGUF file at `path` (little-endian, version 2+)."""
    with (
        Path(path).open("rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m,
    ):
        if len(m) < 24 or m[:4] != b"GGUF":
            raise GgufConversionError(f"{Path(path).name} is not a GGUF file.")
        _version, n_tensors, n_fields = struct.unpack_from("<IQQ", m, 4)
        position = 24
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key, position = _read_string(m, position)
            (kind,) = struct.unpack_from("<I", m, position)
            fields[key], position = _read_value(m, position + 4, kind)
        tensors = []
        for _ in range(n_tensors):
            name, position = _read_string(m, position)
            (dims,) = struct.unpack_from("<I", m, position)
            shape = struct.unpack_from(f"<{dims}Q", m, position + 4)
            (qtype,) = struct.unpack_from("<I", m, position + 4 + 8 * dims)
            position += 4 + 8 * dims + 4 + 8  # the shape, the type and the data offset
            tensors.append((name, tuple(shape), qtype))
    return GgufHeader(fields, tensors)


def _read_string(m: mmap.mmap, position: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<Q", m, position)
    start = position + 8
    return m[start : start + length].decode("utf-8", errors="replace"), start + length


def _read_value(m: mmap.mmap, position: int, kind: int) -> tuple[Any, int]:
    if kind == _V.STRING:
        return _read_string(m, position)
    if kind != _V.ARRAY:
        scalar = struct.Struct(_SCALAR_FORMATS[_V(kind)])
        return scalar.unpack_from(m, position)[0], position + scalar.size
    item_kind, count = struct.unpack_from("<IQ", m, position)
    position += 12
    if item_kind in (_V.STRING, _V.ARRAY):
        items = []
        for _ in range(count):
            item, position = _read_value(m, position, item_kind)
            items.append(item)
        return items, position
    dtype = np.dtype(_SCALAR_FORMATS[_V(item_kind)].replace("?", "b1"))
    values = np.frombuffer(m, dtype=dtype, count=count, offset=position).tolist()
    return values, position + dtype.itemsize * count
