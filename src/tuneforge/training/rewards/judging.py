"""The judge grader: a model behind an OpenAI-compatible API grades completions against the
grader's rubric, through the evaluation's judge client (`evaluation/judge.py`: its retries, its
refusals and its reading of the verdict). The requests of a batch go out a few at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tuneforge.data.conversation import text_of
from tuneforge.evaluation.judge import NO_SCORE, Judge
from tuneforge.training.rewards.rules import Grade, missing
from tuneforge.training.rewards.spec import Judge as JudgeGrader

CONCURRENT_REQUESTS = 4


def question_of(row: Mapping[str, Any]) -> str:
    """What the completion answers: the row's prompt (its only user turn, or the whole
    conversation with each turn's role) or a plain-text `prompt`."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return prompt
    turns = list(prompt or row.get("messages") or [])
    if len(turns) == 1:
        return text_of(turns[0])
    return "\n\n".join(f"[{turn['role']}] {text_of(turn)}" for turn in turns)


def _grade(judge: Judge, spec: JudgeGrader, completion: str, row: Mapping[str, Any]) -> Grade:
    reference = None
    if spec.column is not None:
        if row.get(spec.column) is None:
            return missing(spec.column)
        reference = str(row[spec.column])
    verdict = judge.grade(question_of(row), reference, completion)
    if verdict is None:
        return Grade(0.0, NO_SCORE)
    return Grade(verdict.unit, f"the judge gave {verdict.score}/10: {verdict.reason}".rstrip(": "))


def judge_grades(
    judges: Sequence[tuple[JudgeGrader, Judge]],
    completions: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> dict[str, list[Grade]]:
    """Each judge grader's grade of every completion (by grader name, in the completions'
    order). `JudgeFailed` when an endpoint fails after its retries or refuses."""
    if not judges:
        return {}
    with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
        futures = {
            spec.name: [
                pool.submit(_grade, judge, spec, completion, row)
                for completion, row in zip(completions, rows, strict=True)
            ]
            for spec, judge in judges
        }
        return {name: [future.result() for future in batch] for name, batch in futures.items()}
