"""Tables that load one page at a time from the server, and a dataset's rows in them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui
from nicegui.events import GenericEventArguments

Page = tuple[list[dict[str, Any]], int]
Fetch = Callable[[int, int], Awaitable[Page]]

PAGE_SIZE = 20
CELL_CHARS = 160
ROW_KEY = "__row"  # the row's number (from 1), for dataset rows whose columns may be anything


class PagedTable(ui.column):
    """A table showing `PAGE_SIZE` rows a page, fetched with `fetch(offset, limit)`, and a pager.

    `load()` fetches the current page again (a timer can call it: unchanged rows are not resent).
    """

    def __init__(
        self,
        columns: list[dict[str, Any]],
        fetch: Fetch,
        *,
        row_key: str,
        noun: str,
    ) -> None:
        super().__init__()
        self.fetch = fetch
        self.noun = noun
        self.classes("w-full gap-0")
        with self:
            self.table = (
                ui.table(columns=columns, rows=[], row_key=row_key)
                .props("flat hide-pagination")
                .classes("w-full")
            )
            with ui.row().classes("w-full items-center justify-between q-px-md q-py-xs"):
                self.count = ui.label().classes("text-caption text-grey-7 paged-count")
                self.pager = ui.pagination(1, 1, direction_links=True, on_change=self.load)
                self.pager.props("boundary-links max-pages=7 size=sm")

    async def first_page(self) -> None:
        """Go back to the first page (after the rows changed), and show it."""
        if self.pager.value == 1:
            await self.load()
        else:
            self.pager.set_value(1)  # which loads it

    async def load(self) -> int:
        """Show the current page; returns how many rows there are in all."""
        offset = (self.pager.value - 1) * PAGE_SIZE
        rows, total = await self.fetch(offset, PAGE_SIZE)
        if rows != self.table.rows:
            self.table.rows = rows
            self.table.update()
        pages = max(1, -(-total // PAGE_SIZE))
        self.pager.max = pages
        self.pager.set_visibility(pages > 1)
        plural = "" if total == 1 else "s"
        shown = f"{offset + 1:,}-{offset + len(rows):,} of " if pages > 1 and rows else ""
        self.count.set_text(f"{shown}{total:,} {self.noun}{plural}")
        return total


def compact(value: Any) -> str:
    """A value on one line: text with its whitespace collapsed, a conversation as its turns,
    other nested values as compact JSON; cut at `CELL_CHARS`."""
    if value is None:
        return ""
    if isinstance(value, str):
        line = " ".join(value.split())
    elif _is_conversation(value):
        line = "  ·  ".join(f"{turn['role']}: {_turn_text(turn)}" for turn in value)
    else:
        line = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return line if len(line) <= CELL_CHARS else line[: CELL_CHARS - 1] + "…"


def _is_conversation(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and "role" in t and "content" in t for t in value)
    )


def _turn_text(turn: dict[str, Any]) -> str:
    content = turn["content"]
    if not isinstance(content, list):
        return " ".join(str(content).split())
    return "".join(
        "[image]" if part.get("type") == "image" else " ".join(str(part.get("text", "")).split())
        for part in content
        if isinstance(part, dict)
    )


def _full(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


class RowsTable(PagedTable):
    """A dataset's rows: long cells cut, nested values compact; a click shows the whole row."""

    def __init__(self, columns: list[str], fetch: Fetch) -> None:
        self.shown: dict[int, dict[str, Any]] = {}
        super().__init__(
            [
                {
                    "name": ROW_KEY,
                    "label": "#",
                    "field": ROW_KEY,
                    "align": "right",
                    "classes": "text-grey-6",
                    "style": "width: 1%",
                    "headerStyle": "width: 1%",
                },
                *({"name": c, "label": c, "field": c, "align": "left"} for c in columns),
            ],
            self._fetch_cells,
            row_key=ROW_KEY,
            noun="row",
        )
        self.fetch_rows = fetch
        self.table.classes("dataset-rows").props("dense wrap-cells")
        self.table.on("rowClick", self._open)

    async def _fetch_cells(self, offset: int, limit: int) -> Page:
        rows, total = await self.fetch_rows(offset, limit)
        self.shown = {offset + i: row for i, row in enumerate(rows, start=1)}
        cells = [
            {ROW_KEY: n} | {name: compact(value) for name, value in row.items()}
            for n, row in self.shown.items()
        ]
        return cells, total

    def _open(self, event: GenericEventArguments) -> None:
        number = event.args[1][ROW_KEY]
        row = self.shown.get(number)
        if row is None:
            return
        with ui.dialog() as dialog, ui.card().classes("w-full max-w-3xl q-pa-lg gap-3"):
            with ui.row().classes("w-full items-center justify-between"):
                ui.label(f"Row {number:,}").classes("text-h6")
                ui.button(icon="close", on_click=dialog.close).props("flat round dense")
            for name, value in row.items():
                ui.label(name).classes("text-caption text-weight-medium text-grey-7 -mb-2")
                ui.label(_full(value)).classes(
                    "w-full q-pa-sm rounded-borders bg-grey-2 font-mono text-body2 "
                    "whitespace-pre-wrap break-words"
                )
        dialog.on("hide", dialog.delete)
        dialog.open()
