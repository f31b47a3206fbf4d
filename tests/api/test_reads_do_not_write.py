"""No read ever writes: a GET of every endpoint, with records that still look unfinished, issues
no INSERT, UPDATE or DELETE. Records that follow a job (an export, a dataset being filled)
settle inside the job's transition instead (`JobKind.settle`)."""

from __future__ import annotations

import re

from sqlalchemy import event, select

from tuneforge.db.session import transaction
from tuneforge.db.tables import Dataset, Export, Job, Model, User

WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
STREAMS = ("/events", "/download", "/files/")  # answers that stream: read elsewhere


def _stale_records(factory: object, owner_id: str) -> dict[str, str]:
    """A failed import whose dataset still says `processing` and a failed export job whose
    record still says `running`: what a read used to patch."""
    with transaction(factory) as session:  # type: ignore[arg-type]
        job = Job(owner_id=owner_id, kind="dataset_import", spec={}, status="failed", error="x")
        export_job = Job(owner_id=owner_id, kind="export", spec={}, status="failed", error="y")
        session.add_all([job, export_job])
        session.flush()
        dataset = Dataset(
            owner_id=owner_id,
            name="stale",
            kind="raw",
            origin="huggingface",
            origin_ref="a/b",
            status="processing",
            job_id=job.id,
        )
        model = Model(
            owner_id=owner_id, name="m", base_model="tiny-random-gemma3", kind="adapter", spec={}
        )
        model.artifact_key = "nowhere"
        session.add_all([dataset, model])
        session.flush()
        export = Export(
            owner_id=owner_id,
            model_id=model.id,
            job_id=export_job.id,
            format="adapter",
            destination={"kind": "download"},
            status="running",
            artifact_key="nowhere",
        )
        session.add(export)
        session.flush()
        return {
            "job_id": job.id,
            "dataset_id": dataset.id,
            "model_id": model.id,
            "export_id": export.id,
        }


def test_no_get_issues_a_write(make_client) -> None:
    client = make_client(auth="none")
    assert client.get("/api/v1/jobs").status_code == 200  # the implicit user is made once
    factory = client.app.state.sessions  # type: ignore[attr-defined]
    with transaction(factory) as session:
        owner_id = session.scalars(select(User.id)).one()
    ids = _stale_records(factory, owner_id)

    writes: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if WRITES.match(statement):
            writes.append(statement.split("\n", 1)[0])

    paths = client.get("/api/v1/openapi.json").json()["paths"]
    engine = factory.kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    asked = []
    try:
        for route, methods in paths.items():
            if "get" not in methods or any(part in route for part in STREAMS):
                continue
            path = route
            for name, value in ids.items():
                path = path.replace(f"{{{name}}}", value)
            if "{" in path:
                continue
            response = client.get(path)
            assert response.status_code < 500, (path, response.text)
            asked.append(path)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert writes == [], writes
    for listed in ("/api/v1/jobs", "/api/v1/datasets", f"/api/v1/models/{ids['model_id']}/exports"):
        assert listed in asked
    # The stale records are read as they are: settling is the transition's work, not a read's.
    with transaction(factory) as session:
        assert session.get(Dataset, ids["dataset_id"]).status == "processing"  # type: ignore[union-attr]
        assert session.get(Export, ids["export_id"]).status == "running"  # type: ignore[union-attr]
