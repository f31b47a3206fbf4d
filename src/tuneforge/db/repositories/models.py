"""Fine-tuned models, scoped to their owner."""

from __future__ import annotations

from sqlalchemy import select

from tuneforge.db.repositories.owned import OwnedRepository
from tuneforge.db.tables import Model


class ModelRepository(OwnedRepository[Model]):
    model = Model
    noun = "model"

    def newest(self, *, offset: int, limit: int) -> tuple[list[Model], int]:
        return self.page(
            select(Model), offset=offset, limit=limit, order=(Model.created_at.desc(), Model.id)
        )
