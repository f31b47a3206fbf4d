"""The extraction suite: SQuAD's exact match and token F1 of short answers, after SQuAD's
answer normalisation (`normalize_answer`)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from tuneforge.evaluation.metrics.contract import (
    Reference,
    SuiteResult,
    check_pairs,
    mean,
    reference_lists,
)

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's official answer normalisation, character for character.

    Lowercase, remove ASCII punctuation, drop the English articles a/an/the, collapse whitespace:
    "The Eiffel  Tower!" becomes "eiffel tower".
    """
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1 between two answers, over `normalize_answer` tokens.

    Precision is the share of the prediction's tokens found in the reference (counted with
    multiplicity), recall the share of the reference's; F1 is their harmonic mean. As in SQuAD
    2.0, two empty answers score 1 and an empty answer against a non-empty one scores 0.
    """
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def extraction(predictions: Sequence[str], references: Sequence[Reference]) -> SuiteResult:
    """SQuAD's exact match and token F1, best over each sample's acceptable answers.

    metrics: `exact_match` (fraction of samples whose `normalize_answer` equals one of the
    answers') and `f1` (mean over samples of the best `token_f1`).
    per_sample: `correct` (exact match), `f1`, and `score` (= f1).
    """
    check_pairs(predictions, references)
    per_sample: list[dict[str, float | bool]] = []
    for prediction, answers in zip(predictions, reference_lists(references), strict=True):
        normalized = normalize_answer(prediction)
        exact = any(normalized == normalize_answer(answer) for answer in answers)
        f1 = max(token_f1(prediction, answer) for answer in answers)
        per_sample.append({"correct": exact, "f1": f1, "score": f1})
    return SuiteResult(
        metrics={
            "exact_match": mean([float(sample["correct"]) for sample in per_sample]),
            "f1": mean([float(sample["f1"]) for sample in per_sample]),
        },
        per_sample=per_sample,
    )
