"""A run's metrics are read from its events page by page: a run with more events than one page
has every step once, the later report of a step wins (a resumed run repeats steps), sample
generations come with their step, and other events (progress) are left out."""

from __future__ import annotations

from sqlalchemy import insert

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, JobEvent
from tuneforge.services import accounts, training
from tuneforge.settings import Settings

STEPS = 5_001  # one more than a page of the metrics read


def test_a_long_run_s_metrics_span_pages_and_the_later_report_wins(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        user = accounts.ensure_user(session, "alice")
        job = Job(owner_id=user.id, kind="train", spec={}, status="running")
        session.add(job)
        session.flush()

        def event(type_: str, data: dict[str, object]) -> dict[str, object]:
            return {"job_id": job.id, "type": type_, "data": data}

        rows = [event("metric", {"step": s, "values": {"loss": 3.0}}) for s in range(1, STEPS)]
        rows.append(event("progress", {"step": 2, "total": STEPS, "message": "going on"}))
        rows.append(event("samples", {"step": 4, "items": [{"prompt": "Hi", "answer": "Yo"}]}))
        # Resumed from step 2: steps 3 and after are reported again, the last one on page two.
        rows += [event("metric", {"step": s, "values": {"loss": 1.0}}) for s in (3, STEPS)]
        session.execute(insert(JobEvent), rows)
        job_id = job.id
    with transaction(factory, read_only=True) as session:
        read = training.metrics(session, user, job_id)
    engine.dispose()
    loss = read["series"]["loss"]
    assert [step for step, _ in loss] == list(range(1, STEPS + 1))
    assert dict(loss) == {**dict.fromkeys(range(1, STEPS), 3.0), 3: 1.0, STEPS: 1.0}
    assert read["samples"] == [{"step": 4, "items": [{"prompt": "Hi", "answer": "Yo"}]}]
    assert set(read["series"]) == {"loss"}
