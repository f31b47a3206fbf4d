"""The evaluation suites by name: what an evaluation's `suite` chooses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

from tuneforge.evaluation.metrics.classification import classification
from tuneforge.evaluation.metrics.contract import SuiteResult
from tuneforge.evaluation.metrics.extraction import extraction
from tuneforge.evaluation.metrics.json_output import json_output
from tuneforge.evaluation.metrics.overlap import conversation, summarisation, translation

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
