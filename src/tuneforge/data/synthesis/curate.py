"""Curation of generated pairs: which ones go into the dataset, and why the others do not.

A reply is read first (`pipeline.rows_of_chunk`): a reply with no JSON objects is one
`unparsable` drop, one whose objects hold no usable example one `no_pairs`, each object without
both fields a `malformed` one, and examples past the number asked for are `over_count`. Then
each pair is checked in this order, and the first check it fails is its drop reason:

| reason | the pair is dropped when |
| --- | --- |
| `too_short` / `too_long` | its prompt or answer is outside the length bounds (characters) |
| `not_a_question` | a `qa` or `reasoning` prompt does not end with `?` |
| `not_standalone` | the prompt speaks of "the passage", which the trained model never sees |
| `copies_question` | the answer repeats the prompt instead of answering it |
| `refusal` | the answer declines or says the passage does not tell ("I'm sorry", "not mentioned") |
| `ungrounded` | too few of the answer's content words are in the chunk (`groundedness`) |
| `judge_low` | an LLM judge, given the chunk as the reference, scored it below the threshold |
| `judge_unreadable` | the judge's reply held no score |
| `near_duplicate` | (across chunks) it is nearly the same as a pair kept before it (MinHash) |

**Groundedness** is the share of the answer's distinct content words (not stop words; numbers
count) that occur in the chunk, words compared by a crude stem (a common ending such as -ing,
-ed, -s or -ation dropped, then the first 6 letters), so "installing" matches "installation".
A paraphrase keeps most of its nouns, numbers and names; an answer from outside knowledge does
not.

**Near-duplicates** are found with MinHash over 3-word shingles of a pair's prompt and answer
(64 seeded hash functions, deterministic), an LSH of 16 bands of 4 values to find
candidates, and the share of equal signature values (an estimate of their Jaccard similarity)
to confirm them: a pair at least `near_duplicate_similarity` like an earlier one is dropped.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from tuneforge.evaluation.judge import Judge, JudgeSpec, Verdict
from tuneforge.strict_numbers import Integer, Number, OptionalNumber

DropReason = str
MAX_JUDGE_THREADS = 4  # the judge client's connections (more would wait for one)
PERMUTATIONS = 64
BANDS = 16
SHINGLE_WORDS = 3
STEM_CHARS = 6
_PRIME = (1 << 31) - 1  # a Mersenne prime: hash values and coefficients stay below it
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ed", "es", "s", "ly")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOP_WORDS = """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not now of off on once only or other our ours out over
    own same she should so some such than that the their theirs them then there these they
    this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yes may might must shall one ones use used using
    step steps first second third next finally therefore thus hence answer final result means
    since given total so because following example e g ie etc"""
_STOP = frozenset(_STOP_WORDS.split())
_REFUSALS = re.compile(
    r"\bas an ai\b|\bi(?:'m| am) (?:sorry|unable|not able)\b|\bi (?:cannot|can't|can not)\b"
    r"|\bi do(?:n't| not) (?:know|have)\b|\bno information\b|\bcannot be determined\b"
    r"|\b(?:passage|text|document|context|excerpt) (?:does not|doesn't|do not|did not) "
    r"(?:say|mention|provide|contain|specify|state|include|give)"
    r"|\bnot (?:mentioned|specified|provided|stated|given|described) in the "
    r"(?:passage|text|document|context|excerpt)\b",
    re.IGNORECASE,
)
# "the passage" as the text shown, not "the passage of water"; "in the text" at the end of a
# clause, not "in the text editor"
_NOT_STANDALONE = re.compile(
    r"\b(?:the|this|that|above|given) (?:passage|excerpt)\b(?! of\b)"
    r"|\b(?:the )?(?:text above|above text|provided text)\b"
    r"|\baccording to the (?:text|passage|excerpt)\b"
    r"|\bin the (?:text|passage|excerpt)\b(?!\s+[a-z])",
    re.IGNORECASE,
)
GROUNDING_RUBRIC = (
    "The reference is the source passage the answer was written from, not a model answer. "
    "Grade whether the question is clear and answerable from the passage, and whether the "
    "answer is correct, complete and supported by the passage: an answer with facts the "
    "passage does not state scores low."
)


class CurationSettings(BaseModel):
    """Which generated pairs are kept."""

    model_config = ConfigDict(extra="forbid")

    min_prompt_chars: Integer = Field(
        default=10, ge=1, le=1000, description="Shortest question or instruction kept."
    )
    max_prompt_chars: Integer = Field(
        default=1000, ge=10, le=20_000, description="Longest question or instruction kept."
    )
    min_answer_chars: Integer = Field(default=2, ge=1, le=1000, description="Shortest answer kept.")
    max_answer_chars: Integer = Field(
        default=4000, ge=10, le=50_000, description="Longest answer kept."
    )
    require_question_mark: StrictBool = Field(
        default=True,
        description="For the qa and reasoning tasks: drop prompts that do not end with `?`.",
    )
    drop_refusals: StrictBool = Field(
        default=True,
        description='Drop answers that decline or say the text does not tell ("I\'m sorry", '
        '"not mentioned in the passage").',
    )
    grounded_threshold: Number = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="Least share of an answer's content words found in its chunk: below it the "
        "answer is taken to come from outside the document and dropped (0 keeps all).",
    )
    near_duplicate_similarity: OptionalNumber = Field(
        default=0.7,
        ge=0.5,
        le=1.0,
        description="Drop a pair whose prompt and answer are at least this similar (estimated "
        "Jaccard similarity of their 3-word shingles) to a pair kept before it; 1.0 drops exact "
        "repeats only, None keeps them all.",
    )
    judge: JudgeSpec | None = Field(
        default=None,
        description="An LLM judge that scores each pair against its chunk (slower, one request "
        "per pair). Without a rubric of its own, it is told to grade correctness and support "
        "by the chunk.",
    )
    judge_min_score: Integer = Field(
        default=7, ge=1, le=10, description="Least judge score (1-10) a pair needs to be kept."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_prompt_chars > self.max_prompt_chars:
            raise ValueError("min_prompt_chars must be at most max_prompt_chars.")
        if self.min_answer_chars > self.max_answer_chars:
            raise ValueError("min_answer_chars must be at most max_answer_chars.")
        return self


@dataclass(frozen=True)
class Drop:
    """A pair not kept, and why (`reason`, one of the codes above; `detail` for people)."""

    reason: DropReason
    prompt: str
    answer: str
    detail: str = ""


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _stem(word: str) -> str:
    """A crude stem: a common ending dropped, then the first STEM_CHARS letters."""
    if word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    return word[:STEM_CHARS]


def content_stems(text: str) -> set[str]:
    """The stems of `text`'s content words: not stop words, numbers included."""
    return {_stem(w) for w in words(text) if w not in _STOP and (len(w) > 1 or w.isdigit())}


def groundedness(answer: str, source: str) -> float:
    """The share of the answer's distinct content words found in `source` (1.0 when the
    answer has none to check)."""
    needed = content_stems(answer)
    if not needed:
        return 1.0
    return len(needed & content_stems(source)) / len(needed)


def _copies(prompt: str, answer: str) -> bool:
    asked, said = words(prompt), words(answer)
    if not said:
        return False
    if said == asked or (len(said) >= 3 and " ".join(said) in " ".join(asked)):
        return True
    both = set(asked) | set(said)
    return len(set(asked) & set(said)) / len(both) >= 0.9


def check_pair(
    prompt: str, answer: str, source: str, settings: CurationSettings, asks_question: bool
) -> Drop | None:
    """Why the pair is dropped by the heuristics and groundedness (None: it passes)."""

    def drop(reason: str, detail: str) -> Drop:
        return Drop(reason, prompt, answer, detail)

    if len(prompt) < settings.min_prompt_chars or len(answer) < settings.min_answer_chars:
        return drop("too_short", f"{len(prompt)} + {len(answer)} characters")
    if len(prompt) > settings.max_prompt_chars or len(answer) > settings.max_answer_chars:
        return drop("too_long", f"{len(prompt)} + {len(answer)} characters")
    if asks_question and settings.require_question_mark and not prompt.rstrip().endswith("?"):
        return drop("not_a_question", "the question does not end with ?")
    if _NOT_STANDALONE.search(prompt):
        return drop("not_standalone", "the prompt speaks of the passage")
    if _copies(prompt, answer):
        return drop("copies_question", "the answer repeats the question")
    if settings.drop_refusals and (found := _REFUSALS.search(answer)):
        return drop("refusal", found.group(0))
    score = groundedness(answer, source)
    if score < settings.grounded_threshold:
        return drop("ungrounded", f"groundedness {score:.2f}")
    return None


def judge_pairs(
    judge: Judge, pairs: Sequence[tuple[str, str]], source: str
) -> list[Verdict | None]:
    """The judge's verdict on each pair (up to MAX_JUDGE_THREADS requests at once), the chunk
    given as the reference; `JudgeFailed` when the judge cannot be reached."""
    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_JUDGE_THREADS, len(pairs))) as pool:
        return list(pool.map(lambda pair: judge.grade(pair[0], source, pair[1]), pairs))


def judge_spec(spec: JudgeSpec) -> JudgeSpec:
    """The judge as curation calls it: told what the reference is, unless it has a rubric."""
    return spec if spec.rubric else spec.model_copy(update={"rubric": GROUNDING_RUBRIC})


class MinHash:
    """MinHash signatures of texts' word shingles, with `permutations` hash functions
    (a * h + b) mod p drawn from `seed` (the same seed, the same signatures); numpy computes
    all of a text's values at once."""

    def __init__(self, permutations: int = PERMUTATIONS, seed: int = 0) -> None:
        draw = random.Random(seed)  # noqa: S311 (hash functions for similarity, not secrets)
        self._a = np.array([draw.randrange(1, _PRIME) for _ in range(permutations)], np.int64)
        self._b = np.array([draw.randrange(0, _PRIME) for _ in range(permutations)], np.int64)

    def signature(self, text: str) -> tuple[int, ...]:
        found = shingles(text)
        if not found:
            return (_PRIME,) * len(self._a)
        hashes = np.fromiter(
            (
                int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "big") % _PRIME
                for s in sorted(found)
            ),
            np.int64,
            len(found),
        )
        # a, h < 2^31, so a * h + b < 2^63: no overflow in int64
        values = (self._a[:, None] * hashes[None, :] + self._b[:, None]) % _PRIME
        return tuple(int(v) for v in values.min(axis=1))


def shingles(text: str) -> set[str]:
    """The text's runs of SHINGLE_WORDS words (the whole text when it is shorter)."""
    found = words(text)
    if len(found) <= SHINGLE_WORDS:
        return {" ".join(found)} if found else set()
    return {" ".join(found[i : i + SHINGLE_WORDS]) for i in range(len(found) - SHINGLE_WORDS + 1)}


def similarity(one: Sequence[int], other: Sequence[int]) -> float:
    """The estimated Jaccard similarity of two signatures: the share of equal values."""
    return sum(a == b for a, b in zip(one, other, strict=True)) / len(one)


def near_duplicates(texts: Sequence[str], threshold: float, seed: int = 0) -> list[int | None]:
    """For each text, the index of an earlier, kept text it nearly repeats (estimated Jaccard
    similarity >= `threshold`), or None when it is kept. Deterministic for a given `seed`."""
    hasher = MinHash(seed=seed)
    rows = PERMUTATIONS // BANDS
    buckets: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    signatures: dict[int, tuple[int, ...]] = {}
    found: list[int | None] = []
    for index, text in enumerate(texts):
        signature = hasher.signature(text)
        keys = [(band, signature[band * rows : (band + 1) * rows]) for band in range(BANDS)]
        candidates = sorted({kept for key in keys for kept in buckets.get(key, ())})
        original = next(
            (c for c in candidates if similarity(signature, signatures[c]) >= threshold), None
        )
        found.append(original)
        if original is None:
            signatures[index] = signature
            for key in keys:
                buckets.setdefault(key, []).append(index)
    return found
