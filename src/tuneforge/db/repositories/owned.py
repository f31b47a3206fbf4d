"""Owner scoping for every table whose rows belong to a user."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from tuneforge.errors import NotFound


class Principal(Protocol):
    """Who is asking: a user id and whether they see everything."""

    @property
    def id(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


class Owned(Protocol):
    id: InstrumentedAttribute[str]
    owner_id: InstrumentedAttribute[str]


T = TypeVar("T")


class OwnedRepository(Generic[T]):
    """Reads rows of `model` that `principal` may see: their own, or all of them for admins.

    A row that exists but belongs to someone else is indistinguishable from a missing one.
    """

    model: Any
    #: What a row is called in the message of `require`.
    noun: str = "item"

    def __init__(self, session: Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal

    def scoped(self, statement: Select[Any]) -> Select[Any]:
        if self.principal.is_admin:
            return statement
        return statement.where(self.model.owner_id == self.principal.id)

    def get(self, item_id: str) -> T | None:
        result: T | None = self.session.scalars(
            self.scoped(select(self.model).where(self.model.id == item_id))
        ).first()
        return result

    def require(self, item_id: str) -> T:
        """The row, or `NotFound` (also when it is someone else's)."""
        row = self.get(item_id)
        if row is None:
            raise NotFound(f"No {self.noun} {item_id}.")
        return row

    def page(
        self, statement: Select[Any], *, offset: int, limit: int, order: tuple[Any, ...]
    ) -> tuple[list[T], int]:
        scoped = self.scoped(statement)
        total = self.session.scalar(select(func.count()).select_from(scoped.subquery())) or 0
        rows = list(self.session.scalars(scoped.order_by(*order).offset(offset).limit(limit)))
        return rows, total
