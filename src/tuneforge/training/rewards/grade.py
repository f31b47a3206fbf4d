"""A set of graders scoring completions: each grader's score in [0, 1] with its reason, and the
total, their weighted sum. GRPO rewards its generations with it; the `rewards` evaluation suite
and the try-a-grader endpoint score answers with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tuneforge.errors import InvalidInput
from tuneforge.evaluation.judge import RETRY_DELAYS, TIMEOUT, Judge, JudgeSpec
from tuneforge.training.rewards.judging import judge_grades
from tuneforge.training.rewards.rules import Grade, Rule, rule_for
from tuneforge.training.rewards.spec import GRADERS, GraderSpec
from tuneforge.training.rewards.spec import Judge as JudgeGrader


@dataclass(frozen=True)
class Scores:
    """One completion's reward: `total` (the weighted sum), each grader's score by name in
    `grades` (0..1), and the reason for each in `reasons`."""

    total: float
    grades: dict[str, float]
    reasons: dict[str, str] = field(default_factory=dict)


class GraderSet:
    """Graders with distinct names; `secrets` holds the values of the secrets the judges name
    (their API keys). Judge clients open at the first score; `close()` (or `with`) ends them.
    A judge request waits up to `timeout` seconds and is retried after each of `delays`."""

    def __init__(
        self,
        specs: Sequence[GraderSpec],
        secrets: Mapping[str, str] | None = None,
        *,
        delays: Sequence[float] = RETRY_DELAYS,
        timeout: float = TIMEOUT,
    ) -> None:
        self.specs: list[GraderSpec] = GRADERS.validate_python(list(specs))
        self.secrets = dict(secrets or {})
        self.delays, self.timeout = delays, timeout
        self._rules: dict[str, Rule] = {
            spec.name: rule_for(spec) for spec in self.specs if not isinstance(spec, JudgeGrader)
        }
        self._clients: list[tuple[JudgeGrader, Judge]] | None = None

    def columns(self) -> set[str]:
        """The dataset columns the graders read references (or schemas) from."""
        return {column for spec in self.specs for column in spec.columns()}

    def judges(self) -> list[JudgeSpec]:
        """The endpoints the judge graders call (checked against the endpoint policy, with
        their key secrets, before anything calls them)."""
        return [spec.judge_spec() for spec in self.specs if isinstance(spec, JudgeGrader)]

    def _judge_clients(self) -> list[tuple[JudgeGrader, Judge]]:
        if self._clients is None:
            clients = []
            for spec in self.specs:
                if isinstance(spec, JudgeGrader):
                    key = spec.api_key_secret
                    if key is not None and key not in self.secrets:
                        raise InvalidInput(
                            f"The judge grader {spec.name!r} needs the secret {key}, which is "
                            "not set: set it under Settings, Secrets."
                        )
                    api_key = self.secrets.get(key or "")
                    judge = Judge(
                        spec.judge_spec(), api_key, delays=self.delays, timeout=self.timeout
                    )
                    clients.append((spec, judge))
            self._clients = clients
        return self._clients

    def grade(
        self, completions: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Grade]]:
        """Every grader's grade of each completion (paired with its dataset row), by name in
        the set's order. `JudgeFailed` when a judge's endpoint fails."""
        if len(completions) != len(rows):
            raise ValueError(f"{len(completions)} completions for {len(rows)} rows")
        judged = judge_grades(self._judge_clients(), completions, rows)
        graded: list[dict[str, Grade]] = []
        for number, (completion, row) in enumerate(zip(completions, rows, strict=True)):
            graded.append(
                {
                    spec.name: judged[spec.name][number]
                    if spec.name in judged
                    else self._rules[spec.name](completion, row)
                    for spec in self.specs
                }
            )
        return graded

    def score(self, completions: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[Scores]:
        """Each completion's `Scores` (see `grade`)."""
        weights = {spec.name: spec.weight for spec in self.specs}
        return [
            Scores(
                total=sum(weights[name] * grade.score for name, grade in grades.items()),
                grades={name: grade.score for name, grade in grades.items()},
                reasons={name: grade.reason for name, grade in grades.items()},
            )
            for grades in self.grade(completions, rows)
        ]

    def close(self) -> None:
        for _, client in self._clients or []:
            client.close()
        self._clients = None

    def __enter__(self) -> GraderSet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
