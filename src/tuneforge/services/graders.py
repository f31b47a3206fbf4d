"""Trying reward graders before a run uses them: a grader set grades one completion, each grade
with its reason. A judge grader calls its endpoint for real, under the same rules as a run: the
endpoint policy decides whether this user may make the server call it, and its key comes from
the user's own secrets."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import User
from tuneforge.evaluation.judge import JudgeFailed
from tuneforge.jobs.endpoints import check_judges
from tuneforge.schemas.graders import GraderTrial, GraderTry, GradeTried
from tuneforge.settings import Settings
from tuneforge.training.rewards.grade import GraderSet

JUDGE_TIMEOUT = 20.0  # seconds: someone is waiting for the answer, so no retries either


def try_graders(session: Session, user: User, settings: Settings, trial: GraderTry) -> GraderTrial:
    """Each grader's grade of `trial.completion` and the total. A judge the user may not call,
    or whose key secret is not set, is refused (422); a judge whose endpoint fails (it is asked
    once, without the retries of a run) says why in its grade, and the others still grade."""
    judges = GraderSet(trial.graders).judges()
    check_judges(judges, user, settings, session, "A judge grader's")
    names = [judge.api_key_secret for judge in judges if judge.api_key_secret]
    keys = secret_values(session, settings, user.id, names)
    grades: list[GradeTried] = []
    for spec in trial.graders:  # one set each: a failing judge leaves the others their grade
        with GraderSet([spec], secrets=keys, delays=(), timeout=JUDGE_TIMEOUT) as single:
            try:
                (grade,) = single.grade([trial.completion], [trial.row])[0].values()
            except JudgeFailed as failure:
                score, reason = None, failure.message
            else:
                score, reason = grade.score, grade.reason
        grades.append(
            GradeTried(
                name=spec.name, type=spec.type, weight=spec.weight, score=score, reason=reason
            )
        )
    return GraderTrial(
        grades=grades,
        total=sum(g.weight * g.score for g in grades if g.score is not None),
        max_total=sum(spec.weight for spec in trial.graders),
    )
