"""The evaluation that fits a dataset: the suite its answers call for, and how many tokens an
answer may take. The automatic before/after check of a training run and the Evaluate button's
prefilled form both ask here, so the two evaluate the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneforge.data.conversation import calls_tools
from tuneforge.evaluation.metrics.classification import normalize_label
from tuneforge.evaluation.metrics.json_output import parse_json
from tuneforge.evaluation.samples import Sample, is_pair, to_sample
from tuneforge.evaluation.spec import Suite

FIT_ROWS = 200
"""Rows looked at to choose the suite (the split's first ones)."""
SHORT_WORDS = 5
"""An answer of at most this many words is short: a label or an extracted fact."""
MAX_CLASSES = 50
MIN_NEW_TOKENS, MAX_NEW_TOKENS, DEFAULT_NEW_TOKENS = 16, 128, 64


def _is_json(text: str) -> bool:
    try:
        return isinstance(parse_json(text), dict | list)
    except ValueError:
        return False


def fitting_suite(records: Sequence[Mapping[str, Any]]) -> Suite:
    """The suite that fits rows of a processed split (its first `FIT_ROWS` are looked at).

    * plain text to model, with nothing to answer: `perplexity`;
    * preference pairs (a chosen and a rejected answer) in text: `preference` (which of the
      two the model finds likelier; pairs with images are scored by their chosen answers, as
      below);
    * conversations that declare tools (at least half of the rows) and call them (at least
      one): `tool_calls`;
    * prompts without reference answers: `vibe` (answers side by side);
    * every answer is a JSON object or array: `json`;
    * short answers (at most five words) drawn from a few labels that repeat (at least two
      labels, each seen twice on average, at most 50): `classification`;
    * other short answers (a name, a number, a fact): `extraction` (exact match, token F1);
    * longer answers: `conversation` (ROUGE-L).

    Rows with images count like any other: their images go to the model with the prompt.
    """
    samples = [s for i, r in enumerate(records[:FIT_ROWS]) if (s := to_sample(i, r)) is not None]
    if samples and all(not s.prompt for s in samples):
        return "perplexity"
    if samples and all(is_pair(s.record) and not s.record.get("images") for s in samples):
        return "preference"
    with_tools = [s for s in samples if s.tools and "messages" in s.record]
    if samples and 2 * len(with_tools) >= len(samples) and any(_calls(s) for s in with_tools):
        return "tool_calls"
    references = [s.reference for s in samples if _asks(s) and s.reference is not None]
    if not references:
        return "vibe"
    if all(_is_json(r) for r in references):
        return "json"
    if all(len(r.split()) <= SHORT_WORDS for r in references):
        labels = {normalize_label(r) for r in references}
        if 2 <= len(labels) <= MAX_CLASSES and len(references) >= 2 * len(labels):
            return "classification"
        return "extraction"
    return "conversation"


def _calls(sample: Sample) -> bool:
    return any(calls_tools(m) for m in sample.record["messages"])


def _asks(sample: Sample) -> bool:
    return any(m["role"] == "user" for m in sample.prompt)


def answer_budget(stats: Mapping[str, Any] | None) -> int:
    """`max_new_tokens` for answers like the dataset's: twice its longest answer (in Gemma
    tokens, from the dataset's statistics), at least 16 and at most 128 so that a quick check
    stays quick; 64 when the statistics are unknown."""
    longest = ((stats or {}).get("answer_tokens") or {}).get("max")
    if not longest:
        return DEFAULT_NEW_TOKENS
    return max(MIN_NEW_TOKENS, min(MAX_NEW_TOKENS, 2 * int(longest)))
