"""The classification suite: accuracy, macro-F1 and the confusion matrix of class labels, which
are compared after a forgiving normalisation (`normalize_label`)."""

from __future__ import annotations

import string
from collections.abc import Sequence

from tuneforge.evaluation.metrics.contract import SuiteResult, check_pairs, single_references

OTHER_LABEL = "(other)"
"""The confusion-matrix column for predictions that are none of the reference labels."""

# Quotes (straight, curly, low, guillemets, CJK corner brackets), brackets and markdown emphasis.
_QUOTES_AND_BRACKETS = (
    "\"'`*()[]{}"
    "\u201c\u201d\u2018\u2019\u201e\u201a\u00ab\u00bb\u2039\u203a\u300c\u300d\u300e\u300f"
)
# Sentence punctuation, including the ellipsis and CJK full-width forms.
_TRAILING_PUNCTUATION = ".,;:!?\u2026\u3002\uff0c\u3001\uff01\uff1f"


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

    check_pairs(predictions, references)
    truth = [normalize_label(reference) for reference in single_references(references)]
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
