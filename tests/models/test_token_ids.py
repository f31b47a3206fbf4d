"""`token_ids` gives exactly the ids encoding each text gives, from remembered words."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from tests.models import models_cache_dir
from tests.models.test_tokenizer import _messy_texts
from tuneforge.models import tokenizer as tokenizer_module
from tuneforge.models.tokenizer import _WordCounter, gemma_tokenizer, token_ids

HOSTILE = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "a",
    "two  spaces",
    "three   spaces and    four",
    " leading space",
    "  two leading",
    "trailing space ",
    "trailing two  ",
    "tabs\tinside\t\tand a tab at the end\t",
    "new\nlines\n\nand \n spaces \n",
    "\r\nWindows line\r\nends\r\n",
    "Ünïcödé ça va? Ελληνικά, русский, עברית, العربية",
    "emoji 🎉🚀 👩‍👩‍👧 🏳️‍🌈 mixed🎉words",
    "digits 0 1 12 123 1234 12345 3.14159 -17 1e-10 0x1F 1,000,000",
    "def f(x):\n    return {'a': [x ** 2 for x in range(10)]}  # comment\n",
    '<div class="x">a</div> <b> </b> x> </y >  </',
    "https://example.com/path?query=1&b=two#frag http://a.b/c",
    "mail@example.com C:\\Users\\me\\file.txt ~/.config/app",
    "supercalifragilisticexpialidocious" * 20,
    "x" * 5000,
    "日本語のテキストです。中文文本。한국어 텍스트",
    "日本 語 の テキスト",
    "a literal \u2581 and \u2581\u2581 and word\u2581word",
    "> </ >\u2581</ x> </y",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text <eos> <end_of_turn> tokens",
    "\u00a0non-breaking\u2009thin\u3000ideographic spaces",
    "zero\u200bwidth\u200djoiner",
    "punctuation!!! ??? ... --- *** ___ ``` ~~~",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return gemma_tokenizer(models_cache_dir())


def _encoded(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [list(tokenizer.encode(text, add_special_tokens=False).ids) for text in texts]


def test_ids_are_exactly_the_encoded_ids(tokenizer: Tokenizer) -> None:
    repo = Path(__file__).parents[2]
    documents = [*(repo / "docs").glob("*.md"), *repo.glob("src/**/*.py")]
    paragraphs = [p for d in documents for p in d.read_text(encoding="utf-8").split("\n\n")]
    texts = [*HOSTILE, *_messy_texts(3000), *paragraphs]
    expected = _encoded(tokenizer, texts)
    assert token_ids(texts, tokenizer) == expected
    assert token_ids(texts, tokenizer) == expected  # again, with the words remembered
    assert token_ids([], tokenizer) == []


def test_each_hostile_text_alone(tokenizer: Tokenizer) -> None:
    for text in HOSTILE:
        assert token_ids([text], tokenizer) == _encoded(tokenizer, [text]), repr(text)


def test_a_full_memo_starts_afresh(tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenizer_module, "MEMO_LIMIT", 8)
    counter = _WordCounter(tokenizer)
    texts = _messy_texts(200)
    assert counter.ids(texts[:100]) == _encoded(tokenizer, texts[:100])
    assert counter.ids(texts) == _encoded(tokenizer, texts)  # some remembered, more missing
    assert counter.count(texts).tolist() == [len(ids) for ids in _encoded(tokenizer, texts)]


def test_a_tokenizer_without_the_space_property_encodes_whole() -> None:
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "ab": 3}
    other = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = ["a b", "ab  a", " b ", "c", ""]
    assert _WordCounter(other).unsplittable is None
    assert token_ids(texts, other) == _encoded(other, texts)
