"""Datasets, scoped to their owner."""

from __future__ import annotations

from sqlalchemy import select

from tuneforge.db.repositories.owned import OwnedRepository
from tuneforge.db.tables import Dataset


class DatasetRepository(OwnedRepository[Dataset]):
    model = Dataset
    noun = "dataset"

    def search(self, *, kind: str | None, offset: int, limit: int) -> tuple[list[Dataset], int]:
        statement = select(Dataset)
        if kind:
            statement = statement.where(Dataset.kind == kind)
        return self.page(
            statement, offset=offset, limit=limit, order=(Dataset.created_at.desc(), Dataset.id)
        )
