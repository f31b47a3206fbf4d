"""The metrics of the evaluation suites: pure functions over predictions and references.

Every suite function takes the model's outputs (`predictions`) and the expected outputs
(`references`), paired one to one, and returns a `SuiteResult`:

* `metrics`: the suite's row in the results table, every value a fraction in 0..1 (never a
  percentage: sacrebleu's 0..100 scores are divided by 100);
* `per_sample`: one dict per sample, for the per-sample browser and its filters. Every dict has
  `score` (0..1, higher is better) and, where a sample is simply right or wrong (classification,
  extraction, json), `correct`;
* `details`: what does not fit a row (the confusion matrix, the per-class table, signatures).

The scoring is done by the maintained libraries (scikit-learn, sacrebleu, rouge-score,
jsonschema), imported inside the functions so that importing this module stays cheap.
Mismatched lengths or empty inputs raise `ValueError`; anything but strings (a single string
instead of a list, a None prediction) raises `TypeError`.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias, cast

Reference: TypeAlias = str | Sequence[str]
"""One expected output, or several acceptable ones (the best match counts)."""

OTHER_LABEL = "(other)"
"""The confusion-matrix column for predictions that are none of the reference labels."""

# Quotes (straight, curly, low, guillemets, CJK corner brackets), brackets and markdown emphasis.
_QUOTES_AND_BRACKETS = (
    "\"'`*()[]{}"
    "\u201c\u201d\u2018\u2019\u201e\u201a\u00ab\u00bb\u2039\u203a\u300c\u300d\u300e\u300f"
)
# Sentence punctuation, including the ellipsis and CJK full-width forms.
_TRAILING_PUNCTUATION = ".,;:!?\u2026\u3002\uff0c\u3001\uff01\uff1f"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_FENCE = re.compile(r"\A\s*```(?:json)?(.*?)```\s*\Z", re.DOTALL | re.IGNORECASE)
# Runs of letters and digits, except that Chinese and Japanese characters are one token each
# (those scripts do not put spaces between words).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ROUGE_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


@dataclass(frozen=True)
class SuiteResult:
    """What a suite function returns; see the module docstring for the three parts."""

    metrics: dict[str, float]
    per_sample: list[dict[str, float | bool]]
    details: dict[str, Any] = field(default_factory=dict)


# --- normalisation -------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD's official answer normalisation, character for character.

    Lowercase, remove ASCII punctuation, drop the English articles a/an/the, collapse whitespace:
    "The Eiffel  Tower!" becomes "eiffel tower".
    """
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_label(text: str) -> str:
    """A class label as compared by `classification`: "**Positive.**" matches "positive".

    Casefold, collapse inner whitespace, and strip surrounding whitespace, quotes, brackets and
    markdown emphasis on both ends and sentence punctuation (. , ; : ! ? …) at the end. Signs and
    symbols are kept, so "-1" and "+1", "C" and "C++", "<=50K" and ">50K" stay different labels.
    """
    both_ends = _QUOTES_AND_BRACKETS + string.whitespace
    start, end = 0, len(text)
    while start < end and text[start] in both_ends:
        start += 1
    while end > start and (text[end - 1] in both_ends or text[end - 1] in _TRAILING_PUNCTUATION):
        end -= 1
    return " ".join(text[start:end].casefold().split())


# --- input checks --------------------------------------------------------------------------------


def _check_pairs(predictions: Sequence[str], references: Sequence[Any]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be lists of strings, not one string")
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references: "
            "they must pair up one to one"
        )
    if not predictions:
        raise ValueError("nothing to score: predictions and references are empty")
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise TypeError(f"prediction {index} is {type(prediction).__name__}, not a string")


def _single_references(references: Sequence[Any]) -> list[str]:
    for index, reference in enumerate(references):
        if not isinstance(reference, str):
            raise TypeError(f"reference {index} is {type(reference).__name__}, not a string")
    return list(references)


def _reference_lists(references: Sequence[Reference]) -> list[list[str]]:
    lists: list[list[str]] = []
    for index, reference in enumerate(references):
        answers = [reference] if isinstance(reference, str) else list(reference)
        if not answers:
            raise ValueError(f"reference {index} is an empty list: give at least one answer")
        if not all(isinstance(answer, str) for answer in answers):
            raise TypeError(f"reference {index} must be a string or a list of strings")
        lists.append(answers)
    return lists


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# --- classification ------------------------------------------------------------------------------


def classification(predictions: Sequence[str], references: Sequence[str]) -> SuiteResult:
    """Accuracy and macro-F1 of predicted class labels, compared after `normalize_label`.

    The classes are the distinct normalised references. A prediction that is none of them is
    wrong: it is a false negative of the true class and a false positive of no class, and it
    appears in the confusion matrix in an extra last column, `OTHER_LABEL`, only when there is
    one (so the user sees how often the model answered off the label set, without a column of
    zeros otherwise). There is no `OTHER_LABEL` row, since no reference is "other"; the matrix
    is therefore `len(labels)` rows by `len(predicted_labels)` columns.

    metrics: `accuracy` (fraction of samples whose label matches) and `macro_f1` (the unweighted
    mean of the per-class F1 over the reference classes; a class never predicted has F1 0).
    per_sample: `correct` and `score` (1.0 or 0.0).
    details: `labels` (sorted reference classes: the matrix rows), `predicted_labels` (the
    columns), `confusion_matrix` (rows are true classes, columns predicted, cells are counts) and
    `per_class` ({label: {precision, recall, f1, support}}, support being the number of
    references of that class).
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    _check_pairs(predictions, references)
    truth = [normalize_label(reference) for reference in _single_references(references)]
    for index, label in enumerate(truth):
        if not label:
            raise ValueError(f"reference {index} ({references[index]!r}) is not a label")
    labels = sorted(set(truth))
    known = set(labels)
    predicted = [normalize_label(prediction) for prediction in predictions]
    predicted = [label if label in known else OTHER_LABEL for label in predicted]
    columns = [*labels, OTHER_LABEL] if OTHER_LABEL in predicted else labels

    matrix = confusion_matrix(truth, predicted, labels=columns)[: len(labels)]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    correct = [t == p for t, p in zip(truth, predicted, strict=True)]
    return SuiteResult(
        metrics={
            "accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(
                f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)
            ),
        },
        per_sample=[{"correct": ok, "score": float(ok)} for ok in correct],
        details={
            "labels": labels,
            "predicted_labels": columns,
            "confusion_matrix": [[int(cell) for cell in row] for row in matrix],
            "per_class": {
                label: {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "f1": float(f1[i]),
                    "support": int(support[i]),
                }
                for i, label in enumerate(labels)
            },
        },
    )


# --- extraction ----------------------------------------------------------------------------------


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
    _check_pairs(predictions, references)
    per_sample: list[dict[str, float | bool]] = []
    for prediction, answers in zip(predictions, _reference_lists(references), strict=True):
        normalized = normalize_answer(prediction)
        exact = any(normalized == normalize_answer(answer) for answer in answers)
        f1 = max(token_f1(prediction, answer) for answer in answers)
        per_sample.append({"correct": exact, "f1": f1, "score": f1})
    return SuiteResult(
        metrics={
            "exact_match": _mean([float(sample["correct"]) for sample in per_sample]),
            "f1": _mean([float(sample["f1"]) for sample in per_sample]),
        },
        per_sample=per_sample,
    )


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

    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(kinds, tokenizer=_Tokenizer())
    scores: list[dict[str, float]] = []
    for prediction, answers in zip(predictions, _reference_lists(references), strict=True):
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
        metrics={kind: _mean([sample[kind] for sample in scores]) for kind in kinds},
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
        metrics={kind: _mean([sample[kind] for sample in scores]) for kind in kinds},
        per_sample=[{**sample, "score": sample["rougeL"]} for sample in scores],
    )


def _similarities(
    predictions: Sequence[str],
    references: Sequence[Reference],
    embed: Callable[[Sequence[str]], Any],
) -> list[float]:
    import numpy as np

    answers = _reference_lists(references)
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

    _check_pairs(predictions, references)
    answers = _reference_lists(references)
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


# --- json ----------------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str) -> Any:
    """The JSON value of `text`, after removing a ```json (or bare ```) fence around all of it.

    Only a fence that wraps the whole text is removed: prose before or after the JSON makes it
    unparseable, as it would be for a program reading the output. NaN and Infinity, which
    Python's json accepts but JSON does not, are rejected. Raises ValueError when it does not
    parse.
    """
    fenced = _FENCE.match(text)
    return json.loads(fenced.group(1) if fenced else text, parse_constant=_reject_constant)


def json_equal(left: Any, right: Any) -> bool:
    """Whether two parsed JSON values are the same: key order ignored, 1 == 1.0, but true != 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, (dict, list)) or isinstance(right, (dict, list)):
        return False
    return bool(left == right)


def _try_parse(text: str) -> tuple[bool, Any]:
    try:
        return True, parse_json(text)
    except ValueError:
        return False, None


def json_output(
    predictions: Sequence[str],
    references: Sequence[str],
    schema: dict[str, Any] | None = None,
) -> SuiteResult:
    """Whether outputs are JSON, equal to the reference's JSON, and valid against a schema.

    A reference that does not parse as JSON (for instance "" in a schema-only evaluation) is
    not compared with; `details["references_parsed"]` says how many did. The schema, if given,
    is a JSON Schema checked with `jsonschema` under the draft its `$schema` names (the latest
    by default); an invalid schema raises ValueError.

    metrics: `parse_rate` (fraction of predictions that parse, see `parse_json`),
    `exact_match` (fraction of the samples with a parsed reference whose prediction equals it,
    see `json_equal`; absent when no reference parses) and `schema_match_rate` (fraction of
    predictions that parse and are valid; only with a schema).
    per_sample: `parsed`; `exact_match` (only when the reference parses); `schema_valid` (only
    with a schema); `correct`, true when every one of those present is true; `score` (1.0 or 0.0).
    """
    _check_pairs(predictions, references)
    validator = _validator(schema) if schema is not None else None
    per_sample: list[dict[str, float | bool]] = []
    for prediction, reference in zip(predictions, _single_references(references), strict=True):
        parsed, value = _try_parse(prediction)
        sample: dict[str, float | bool] = {"parsed": parsed}
        has_reference, expected = _try_parse(reference)
        if has_reference:
            sample["exact_match"] = parsed and json_equal(value, expected)
        if validator is not None:
            sample["schema_valid"] = parsed and bool(validator.is_valid(value))
        correct = all(bool(flag) for flag in sample.values())
        per_sample.append({**sample, "correct": correct, "score": float(correct)})

    metrics = {"parse_rate": _mean([float(sample["parsed"]) for sample in per_sample])}
    compared = [float(sample["exact_match"]) for sample in per_sample if "exact_match" in sample]
    if compared:
        metrics["exact_match"] = _mean(compared)
    if validator is not None:
        metrics["schema_match_rate"] = _mean([float(s["schema_valid"]) for s in per_sample])
    return SuiteResult(metrics, per_sample, {"references_parsed": len(compared)})


def _validator(schema: dict[str, Any]) -> Any:
    from jsonschema import exceptions, validators

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as error:
        raise ValueError(f"the schema is not a valid JSON Schema: {error.message}") from error
    return cls(schema)


# --- registry ------------------------------------------------------------------------------------

Suite: TypeAlias = Callable[[Sequence[str], Sequence[str]], SuiteResult]

SUITES: dict[str, Suite] = {
    "classification": classification,
    "extraction": extraction,
    "summarisation": summarisation,
    "translation": translation,
    "json": json_output,
    "conversation": conversation,
}
"""The suite names the evaluation job accepts, each with its metric function."""
