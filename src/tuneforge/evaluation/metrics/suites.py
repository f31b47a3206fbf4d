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
"""The suites that score answers against text references alone, each with its metric
function; `evaluation.run.score` gives the others what they need besides (the json suite its
schema, the tool_calls suite the references' calls, the tools and the model's call notation)."""
