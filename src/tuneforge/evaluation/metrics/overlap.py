"""The suites that score a generated text by its overlap with the reference: summarisation
(ROUGE), conversation (ROUGE-L and, given an embedder, embedding similarity) and translation
(BLEU and chrF)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from tuneforge.evaluation.metrics.contract import (
    Reference,
    SuiteResult,
    check_pairs,
    mean,
    reference_lists,
)

# Runs of letters and digits, except that Chinese and Japanese characters are one token each
# (those scripts do not put spaces between words).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ROUGE_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


# --- summarisation and conversation --------------------------------------------------------------


@functools.cache
def _porter_stemmer() -> Any:
    from nltk.stem import porter

    return porter.PorterStemmer()


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE compares: rouge-score's own tokenisation, extended beyond English.

    rouge-score lowercases, splits on anything but a-z and 0-9 and Porter-stems tokens longer
    than 3 characters, so any text without Latin letters scores 0 ("café" even loses its "é").
    This does the same but keeps every letter and digit (Cyrillic, Greek, accented Latin...)
    and splits Chinese and Japanese into characters: on ASCII text the tokens are exactly
    rouge-score's. The English stemmer still runs on every token; on other languages it changes
    little, and it changes prediction and reference alike.
    """
    stemmer = _porter_stemmer()
    return [stemmer.stem(t) if len(t) > 3 else t for t in _ROUGE_TOKEN.findall(text.lower())]


def _rouge(
    predictions: Sequence[str], references: Sequence[Reference], kinds: list[str]
) -> list[dict[str, float]]:
    from rouge_score import rouge_scorer, tokenizers

    class _Tokenizer(tokenizers.Tokenizer):  # type: ignore[misc]
        def tokenize(self, text: str) -> list[str]:
            return rouge_tokens(text)

    check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(kinds, tokenizer=_Tokenizer())
    scores: list[dict[str, float]] = []
    for prediction, answers in zip(predictions, reference_lists(references), strict=True):
        best = scorer.score_multi(answers, prediction)
        scores.append({kind: float(best[kind].fmeasure) for kind in kinds})
    return scores


def summarisation(predictions: Sequence[str], references: Sequence[Reference]) -> SuiteResult:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (rouge-score, Porter stemming, `rouge_tokens`).

    ROUGE-N's F-measure is the harmonic mean of the shares of the prediction's and the
    reference's n-grams that the other contains; ROUGE-L's uses the longest common subsequence
    of tokens over the whole text (no sentence splitting). With several references per sample,
    each kind takes the best reference.

    metrics: `rouge1`, `rouge2`, `rougeL`, each the mean over samples.
    per_sample: the same three and `score` (= rougeL).
    """
    kinds = ["rouge1", "rouge2", "rougeL"]
    scores = _rouge(predictions, references, kinds)
    return SuiteResult(
        metrics={kind: mean([sample[kind] for sample in scores]) for kind in kinds},
        per_sample=[{**sample, "score": sample["rougeL"]} for sample in scores],
    )


def conversation(
    predictions: Sequence[str],
    references: Sequence[Reference],
    embed: Callable[[Sequence[str]], Any] | None = None,
) -> SuiteResult:
    """ROUGE-L F-measure of each reply against the reference reply, as in `summarisation`, and,
    given `embed` (texts to unit-length vectors, see `evaluation.embedding`), the cosine
    similarity of the reply's and the reference's embeddings (a negative cosine counts as 0; with
    several references, the best).

    metrics: `rougeL` and, with `embed`, `embedding_similarity` (means over samples).
    per_sample: the same and `score` (= rougeL).
    """
    scores: list[dict[str, float]] = _rouge(predictions, references, ["rougeL"])
    if embed is not None:
        for sample, similarity in zip(
            scores, _similarities(predictions, references, embed), strict=True
        ):
            sample["embedding_similarity"] = similarity
    kinds = list(scores[0])
    return SuiteResult(
        metrics={kind: mean([sample[kind] for sample in scores]) for kind in kinds},
        per_sample=[{**sample, "score": sample["rougeL"]} for sample in scores],
    )


def _similarities(
    predictions: Sequence[str],
    references: Sequence[Reference],
    embed: Callable[[Sequence[str]], Any],
) -> list[float]:
    import numpy as np

    answers = reference_lists(references)
    texts = [*predictions, *(text for group in answers for text in group)]
    vectors = np.asarray(embed(texts), dtype=np.float64)
    start = len(predictions)
    similarities = []
    for number, group in enumerate(answers):
        cosines = vectors[start : start + len(group)] @ vectors[number]
        similarities.append(float(np.clip(cosines.max(), 0.0, 1.0)))
        start += len(group)
    return similarities


# --- translation ---------------------------------------------------------------------------------


def _from_percent(score: float) -> float:
    """sacrebleu's 0..100 as 0..1, clamped: a perfect BLEU comes out as 100.00000000000004."""
    return min(max(float(score) / 100, 0.0), 1.0)


def translation(predictions: Sequence[str], references: Sequence[Reference]) -> SuiteResult:
    """Corpus BLEU and chrF from sacrebleu with its default settings, divided by 100.

    BLEU (13a tokenisation, exponential smoothing) is a corpus score: the geometric mean of the
    1- to 4-gram precisions pooled over all samples, times a brevity penalty; it is not the mean
    of per-sample scores. chrF is the character 6-gram F-score with recall weighted twice
    (beta = 2), also pooled over the corpus. Samples may have different numbers of references.

    metrics: `bleu`, `chrf`.
    per_sample: `chrf` (sentence chrF, more stable than sentence BLEU) and `score` (= chrf).
    details: `bleu` (sacrebleu's one-line summary, on its 0..100 scale) and the sacrebleu
    signatures `bleu_signature` and `chrf_signature` that make the scores reproducible.
    """
    from sacrebleu import BLEU, CHRF

    check_pairs(predictions, references)
    answers = reference_lists(references)
    width = max(len(refs) for refs in answers)
    # sacrebleu wants one stream per reference position; None marks a sample with fewer
    # references (documented in sacrebleu's Metric._cache_references, though not in its types).
    streams = cast(
        "list[list[str]]",
        [[refs[i] if i < len(refs) else None for refs in answers] for i in range(width)],
    )
    bleu, chrf = BLEU(), CHRF()
    corpus_bleu = bleu.corpus_score(list(predictions), streams)
    corpus_chrf = chrf.corpus_score(list(predictions), streams)
    per_sample: list[dict[str, float | bool]] = []
    for prediction, refs in zip(predictions, answers, strict=True):
        score = _from_percent(chrf.sentence_score(prediction, refs).score)
        per_sample.append({"chrf": score, "score": score})
    return SuiteResult(
        metrics={
            "bleu": _from_percent(corpus_bleu.score),
            "chrf": _from_percent(corpus_chrf.score),
        },
        per_sample=per_sample,
        details={
            "bleu": str(corpus_bleu),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
        },
    )
