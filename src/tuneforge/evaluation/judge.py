"""LLM-as-judge: a model behind any OpenAI-compatible chat-completions endpoint grades each
answer of an evaluation against its question and reference, from 1 to 10.

`JudgeSpec` says which endpoint and model, and which of the user's secrets holds the API key
(its name only: the worker reads the value, which is never logged nor stored in the results).
The judge answers a strict format, `{"score": n, "reason": "..."}` (code fences tolerated);
the score maps to 0..1 as (n - 1) / 9 and lands in each sample's scores as `judge_score` and
`judge_reason`, its mean in each model's metrics as `judge_score`.

Light on purpose: the web process validates `JudgeSpec`; only `httpx` is used to call the judge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.data.synthesis.generator import RETRY_DELAYS as RETRY_DELAYS
from tuneforge.data.synthesis.generator import TIMEOUT as TIMEOUT
from tuneforge.data.synthesis.generator import (
    ChatEndpoint,
    api_key_secret_field,
    base_url_field,
    http_url,
)
from tuneforge.errors import DomainError

MAX_REASON_CHARS = 500
SYSTEM_PROMPT = (
    "You are a strict, fair grader. You are shown a question, usually a reference answer, and an "
    "answer to grade. Grade how well the answer answers the question: its correctness against "
    "the reference first, then its completeness and clarity. Use the whole scale from 1 (wrong "
    "or irrelevant) to 10 (as good as the reference). Reply with only a JSON object, without "
    'any other text: {"score": <an integer from 1 to 10>, "reason": "<one short sentence>"}'
)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_SCORE = re.compile(r"""["']?score["']?\s*[:=]\s*["']?(\d+(?:\.\d+)?)""", re.IGNORECASE)
NO_SCORE = "The judge's reply held no score from 1 to 10."


class JudgeSpec(BaseModel):
    """The judge: a model behind an OpenAI-compatible API, and the key to call it with."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = base_url_field(
        "The judge's OpenAI-compatible API, up to its version: "
        "`https://api.openai.com/v1`, or another TuneForge's `http://host:7860/v1`."
    )
    model: str = Field(
        min_length=1, max_length=200, description="The judge model's name at that API."
    )
    api_key_secret: str | None = api_key_secret_field("JUDGE_API_KEY")
    rubric: str | None = Field(
        default=None,
        max_length=4000,
        description="Extra grading instructions for the judge (what matters in an answer).",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url)


class JudgeFailed(DomainError):
    """The judge endpoint refused or could not answer: the evaluation fails with this message."""

    code = "judge_failed"


@dataclass(frozen=True)
class Verdict:
    score: int  # 1..10
    reason: str

    @property
    def unit(self) -> float:
        """The score in 0..1."""
        return (self.score - 1) / 9


def judge_messages(
    question: str, reference: str | None, answer: str, rubric: str | None
) -> list[dict[str, str]]:
    """The chat the judge is asked: the instructions, then the sample in marked sections."""
    system = SYSTEM_PROMPT + (f"\n\nGrading instructions:\n{rubric}" if rubric else "")
    shown = reference if reference is not None else "(none: judge the answer on its own merits)"
    user = f"Question:\n{question}\n\nReference answer:\n{shown}\n\nAnswer to grade:\n{answer}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_verdict(text: str) -> Verdict | None:
    """The judge's reply as a verdict, or None when it holds no score from 1 to 10. A JSON
    object (inside code fences or other text too) is read first, then a bare `score: n`."""
    score: Any = None
    reason: Any = ""
    found = _OBJECT.search(text)
    if found:
        try:
            data = json.loads(found.group(0))
        except ValueError:
            data = None
        if isinstance(data, dict):
            score, reason = data.get("score"), data.get("reason", "")
    if score is None and (bare := _SCORE.search(text)):
        score = bare.group(1)
    try:
        number = float(score)
    except (TypeError, ValueError):
        return None
    if not 1 <= number <= 10 or number != int(number):
        return None
    return Verdict(int(number), str(reason or "").strip()[:MAX_REASON_CHARS])


class Judge:
    """Grades answers through one judge endpoint (a connection pool; close it when done)."""

    def __init__(
        self,
        spec: JudgeSpec,
        api_key: str | None,
        *,
        delays: Sequence[float] = RETRY_DELAYS,
        timeout: float = TIMEOUT,
    ) -> None:
        self.spec = spec
        self.delays = delays
        self._endpoint = ChatEndpoint(
            spec.base_url,
            spec.model,
            api_key,
            who="judge",
            failure=JudgeFailed,
            delays=delays,
            timeout=timeout,
        )

    def close(self) -> None:
        self._endpoint.close()

    def _complete(self, messages: list[dict[str, str]]) -> str:
        return self._endpoint.complete(messages, temperature=0).text

    def grade(self, question: str, reference: str | None, answer: str) -> Verdict | None:
        """The judge's verdict on `answer`, or None when its reply holds no readable score."""
        return parse_verdict(
            self._complete(judge_messages(question, reference, answer, self.spec.rubric))
        )


def _question(row: Mapping[str, Any]) -> str:
    """The sample's conversation, or just its question when it has one turn."""
    turns = row.get("messages") or []
    if len(turns) <= 1:
        return str(row["prompt"])
    return "\n\n".join(f"[{turn['role']}] {turn['text']}" for turn in turns)


def judge_rows(
    judge: Judge,
    rows: Sequence[dict[str, Any]],
    labels: Sequence[str],
    on_answer: Callable[[int, int], None],
) -> dict[str, float]:
    """Grade every model's answer in the evaluation's `rows`, adding `judge_score` (0..1) and
    `judge_reason` to each answer's scores; return each label's mean `judge_score`.

    `on_answer(total, done)` is called before the first answer and after each one (it may raise
    to stop). An unreadable reply leaves its answer ungraded (`judge_reason` says why); the mean
    is over the graded ones. `JudgeFailed` when the endpoint fails or grades none at all; the
    rows are then left as they were.
    """
    total = len(rows) * len(labels)
    done = 0
    on_answer(total, done)
    graded: dict[str, list[float]] = {label: [] for label in labels}
    grades: list[tuple[dict[str, Any], str, dict[str, Any]]] = []  # written once all are graded
    for row in rows:
        for label in labels:
            verdict = judge.grade(_question(row), row.get("reference"), row["answers"][label])
            if verdict is None:
                grades.append((row, label, {"judge_reason": NO_SCORE}))
            else:
                grade = {"judge_score": verdict.unit, "judge_reason": verdict.reason}
                grades.append((row, label, grade))
                graded[label].append(verdict.unit)
            done += 1
            on_answer(total, done)
    if total and not any(graded.values()):
        raise JudgeFailed(
            f"The judge {judge.spec.model!r} replied to every answer, but never with a score "
            'from 1 to 10 in the format {"score": n, "reason": "..."}.'
        )
    for row, label, grade in grades:
        row["scores"].setdefault(label, {}).update(grade)
    return {label: sum(values) / len(values) for label, values in graded.items() if values}
