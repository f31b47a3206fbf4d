"""The metadata side of GGUF export (the weights are `tuneforge.export.gguf`): the model's
numbers from config.json, the tokenizer, the chat template, and a fast reader of GGUF headers.
`DecoderHyper.add_to` writes the keys: those every Gemma decoder has, then the family's own
(Gemma 3's `Hyper` here, `gguf_gemma4.Gemma4Hyper`), the tokenizer and the chat template.

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

GGUF headers are read back with `gguf_header.read_header`.
"""

from __future__ import annotations

import functools
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from tuneforge.export.gguf_header import GgufConversionError, read_header
from tuneforge.models.chat_template import GEMMA_4

SPACE = "\u2581"  # sentencepiece's visible space, `▁`
#: Gemma's special tokens, used when `tokenizer_config.json` names none.
DEFAULT_SPECIAL = {"bos": "<bos>", "eos": "<eos>", "unk": "<unk>", "pad": "<pad>"}
END_OF_TURN = "<end_of_turn>"
_UNUSED = re.compile(r"<unused(\d+)>")
_T = gguf.TokenType


# -- the model's numbers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderHyper(ABC):
    """The numbers every Gemma decoder's GGUF file carries; Gemma 3's `Hyper` and Gemma 4's
    `gguf_gemma4.Gemma4Hyper` add their own (`add_own`)."""

    context_length: int
    hidden_size: int
    layers: int
    #: The MLP width and the key/value heads: one number, or one per layer (Gemma 4).
    feed_forward: int | list[int]
    heads: int
    kv_heads: int | list[int]
    #: The width of an attention head (Gemma 4: of its full-attention layers).
    head_dim: int
    rms_eps: float
    rope_base: float
    vocab_rows: int
    tied: bool

    def add_to(
        self,
        writer: gguf.GGUFWriter,
        name: str,
        file_type: gguf.LlamaFileType,
        vocab: Vocabulary,
        template: str | None,
    ) -> None:
        """Every key of the GGUF file but the tensors', with a `gguf.GGUFWriter`."""
        writer.add_name(name)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(self.context_length)
        writer.add_embedding_length(self.hidden_size)
        writer.add_block_count(self.layers)
        writer.add_feed_forward_length(self.feed_forward)
        writer.add_head_count(self.heads)
        writer.add_head_count_kv(self.kv_heads)
        writer.add_key_length(self.head_dim)
        writer.add_value_length(self.head_dim)
        writer.add_layer_norm_rms_eps(self.rms_eps)
        writer.add_rope_freq_base(self.rope_base)
        self.add_own(writer)
        vocab.add_to(writer)
        if template:
            writer.add_chat_template(template)

    @abstractmethod
    def add_own(self, writer: gguf.GGUFWriter) -> None:
        """The keys of the family's own numbers."""


@dataclass(frozen=True)
class Hyper(DecoderHyper):
    """The numbers llama.cpp needs from a Gemma 3's config.json."""

    feed_forward: int
    kv_heads: int
    sliding_window: int | None
    sliding_layers: list[bool]
    rope_base_local: float
    rope_linear_factor: float | None
    final_softcap: float | None

    def add_own(self, writer: gguf.GGUFWriter) -> None:
        if self.rope_linear_factor is not None:
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(self.rope_linear_factor)
        if self.final_softcap:
            writer.add_final_logit_softcapping(float(self.final_softcap))
        if self.sliding_window is not None:
            writer.add_sliding_window(self.sliding_window)
            # Which layers slide: llama.cpp otherwise assumes Gemma's five-in-six, which small
            # models (fewer than six layers) do not follow.
            writer.add_sliding_window_pattern(self.sliding_layers)
            writer.add_rope_freq_base_swa(self.rope_base_local)


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
            "GGUF export supports Gemma 3 (Gemma3ForCausalLM, Gemma3ForConditionalGeneration) "
            "and Gemma 4 (Gemma4ForCausalLM, Gemma4ForConditionalGeneration); this model is "
            f"{found}: export it as merged or adapter."
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
        feed_forward=int(config["intermediate_size"]),
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
        _rename_added(vocab, _added_after(model_dir, 0))
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
    from tuneforge.models.tokenizer import model_tokenizer

    try:
        tokenizer = model_tokenizer(Path(tokenizer_file).parent)
        vocab = tokenizer.get_vocab(with_added_tokens=True)
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
    # Added tokens may be renamed (Gemma 4's control tokens at Gemma 3's ids): they are written
    # under the tokenizer's names (`_rename_added`).
    added = set(tokenizer.get_added_tokens_decoder())
    for token_id, (ours, theirs) in enumerate(zip(by_id, tokens, strict=True)):
        if token_id in added:
            continue
        if ours != theirs and ours.replace(SPACE, " ") != theirs.replace(SPACE, " "):
            return f"id {token_id} is {ours!r} here, {theirs!r} there"
    return None


def _added_after(model_dir: Path, first: int) -> list[tuple[int, str, bool]]:
    """The tokens of `model_dir`'s tokenizer.json from id `first` on: `(id, piece, special)`."""
    from tuneforge.models.tokenizer import model_tokenizer

    added = model_tokenizer(model_dir).get_added_tokens_decoder()
    return sorted(
        (token_id, token.content, token.special)
        for token_id, token in added.items()
        if token_id >= first
    )


def _rename_added(vocab: Vocabulary, added: list[tuple[int, str, bool]]) -> None:
    """Write the tokenizer's added tokens under its own names where the reference names them
    otherwise (a Gemma 4's `<|turn>` where Gemma 3 has `<start_of_turn>`); their roles, and
    so their token types, are the same."""
    for token_id, piece, _special in added:
        if token_id < len(vocab.tokens):
            vocab.tokens[token_id] = piece


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
