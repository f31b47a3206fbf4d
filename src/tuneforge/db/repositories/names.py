"""The names of a user's datasets, models and runs, by id: what lists show instead of ids.

Each function is one owner-scoped query for a whole list's ids; an id that is missing (deleted)
or someone else's is simply absent from the answer.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.repositories.datasets import DatasetRepository
from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.repositories.owned import Principal
from tuneforge.db.tables import Model


def dataset_names(session: Session, principal: Principal, ids: Collection[str]) -> dict[str, str]:
    """Dataset id → name."""
    return _names(session, DatasetRepository(session, principal), ids)


def model_names(session: Session, principal: Principal, ids: Collection[str]) -> dict[str, str]:
    """Fine-tuned model id → name."""
    return _names(session, ModelRepository(session, principal), ids)


def _names(
    session: Session, repository: DatasetRepository | ModelRepository, ids: Collection[str]
) -> dict[str, str]:
    if not ids:
        return {}
    table = repository.model
    statement = repository.scoped(select(table).where(table.id.in_(sorted(set(ids)))))
    rows = session.execute(statement.with_only_columns(table.id, table.name))
    return {row.id: row.name for row in rows}


def models_of_runs(
    session: Session, principal: Principal, job_ids: Collection[str]
) -> dict[str, tuple[str, str]]:
    """Training job id → (id, name) of the model the run made."""
    if not job_ids:
        return {}
    statement = ModelRepository(session, principal).scoped(
        select(Model).where(Model.job_id.in_(sorted(set(job_ids))))
    )
    rows = session.execute(statement.with_only_columns(Model.job_id, Model.id, Model.name))
    return {row.job_id: (row.id, row.name) for row in rows if row.job_id}
