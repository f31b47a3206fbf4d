"""Tables that load one page at a time from the server, and a dataset's rows in them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui
from nicegui.events import GenericEventArguments

from tuneforge.ui.dataset_preview import CSS, RENDERED, highlighted

Page = tuple[list[dict[str, Any]], int]
Fetch = Callable[[int, int], Awaitable[Page]]

PAGE_SIZE = 20
CELL_CHARS = 160
ROW_KEY = "__row"  # the row's number (from 1), for dataset rows whose columns may be anything
PICTURES = "__pictures"  # a cell's thumbnails: the row holds them under "<column>__pictures"
PICTURE = "data:image/"
NAMED_IMAGES = "_images"  # a raw ZIP dataset's row: {column: thumbnails of the images it names}
CELL = f"""
<q-td :props="props">
  <span>{{{{ props.value }}}}</span>
  <div v-if="props.row[props.col.name + '{PICTURES}']" class="row items-center q-gutter-xs">
    <img v-for="(src, i) in props.row[props.col.name + '{PICTURES}']" :key="i" :src="src"
      class="row-picture" style="max-height: 48px; max-width: 72px; border-radius: 3px;">
  </div>
</q-td>
"""


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


def pictures(value: Any) -> list[str]:
    """The image thumbnails (data: URLs) anywhere in `value`, in order."""
    if isinstance(value, str):
        return [value] if value.startswith(PICTURE) else []
    if isinstance(value, list):
        return [url for item in value for url in pictures(item)]
    if isinstance(value, dict):
        return [url for item in value.values() for url in pictures(item)]
    return []


def without_pictures(value: Any) -> Any:
    """`value` with each thumbnail written `[image]` (the cell shows the pictures after it)."""
    if isinstance(value, str):
        return "[image]" if value.startswith(PICTURE) else value
    if isinstance(value, list):
        return [without_pictures(item) for item in value]
    if isinstance(value, dict):
        return {key: without_pictures(item) for key, item in value.items()}
    return value


def _full(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


class RowsTable(PagedTable):
    """A dataset's rows: long cells cut, nested values compact; a click shows the whole row."""

    def __init__(self, columns: list[str], fetch: Fetch) -> None:
        self.shown: dict[int, dict[str, Any]] = {}
        self.named: dict[int, dict[str, list[str]]] = {}  # pictures of what raw values name
        super().__init__(
            [
                {
                    "name": ROW_KEY,
                    "label": "#",
                    "field": ROW_KEY,
                    "align": "right",
                    "classes": "text-grey-6",
                    "style": "width: 1%; white-space: nowrap",
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
        self.table.add_slot("body-cell", CELL)
        ui.add_css(CSS)
        self.table.on("rowClick", self._open)

    async def _fetch_cells(self, offset: int, limit: int) -> Page:
        rows, total = await self.fetch_rows(offset, limit)
        self.shown = {offset + i: row for i, row in enumerate(rows, start=1)}
        cells = []
        for n, row in self.shown.items():
            cell: dict[str, Any] = {ROW_KEY: n}
            self.named[n] = row.pop(NAMED_IMAGES, None) or {}
            for name, named in self.named[n].items():
                cell[name + PICTURES] = named  # the images a raw ZIP dataset's value names
            for name, value in row.items():
                found = pictures(value)
                rest = without_pictures(value)
                only_pictures = found and rest in ("[image]", ["[image]"] * len(found))
                cell[name] = "" if only_pictures else compact(rest)
                if found:
                    cell[name + PICTURES] = cell.get(name + PICTURES, []) + found
            cells.append(cell)
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
            rendered = _as_trained(row)
            if rendered is not None:
                ui.label("As the model reads it").classes(
                    "text-caption text-weight-medium text-grey-7 -mb-2"
                )
                ui.html(highlighted(rendered, pictures(row.get("images"))), tag="pre").classes(
                    RENDERED + " row-rendered"
                )
            for name, value in row.items():
                ui.label(name).classes("text-caption text-weight-medium text-grey-7 -mb-2")
                ui.label(_full(without_pictures(value))).classes(
                    "w-full q-pa-sm rounded-borders bg-grey-2 font-mono text-body2 "
                    "whitespace-pre-wrap break-words"
                )
                with ui.row().classes("gap-2"):
                    for source in self.named.get(number, {}).get(name, []) + pictures(value):
                        ui.image(source).classes("row-picture w-24").props("fit=contain")
        dialog.on("hide", dialog.delete)
        dialog.open()


def _as_trained(row: dict[str, Any]) -> str | None:
    """A processed row rendered in Gemma's chat format (None for a raw row or plain text)."""
    from tuneforge.services.datasets import rendered_example

    if not any(key in row for key in ("messages", "prompt")):
        return None
    try:
        return rendered_example(row)
    except (KeyError, TypeError, ValueError):  # a raw dataset whose columns have these names
        return None
