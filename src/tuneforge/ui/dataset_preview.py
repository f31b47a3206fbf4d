"""The live preview: the first rows in Gemma's chat format, exactly as training will see them."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui

from tuneforge.data.mapping import MappingSpec
from tuneforge.errors import DomainError
from tuneforge.models.chat_template import BOS, END_OF_TURN, START_OF_IMAGE, START_OF_TURN
from tuneforge.ui.dataset_summary import notice

Render = Callable[[MappingSpec], Awaitable[list[dict[str, Any]]]]

SPECIAL_TOKENS = re.compile(
    "|".join(
        re.escape(html.escape(token)) for token in (BOS, START_OF_TURN, END_OF_TURN, START_OF_IMAGE)
    )
)
CSS = """
.gemma-rendered { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.85rem; }
.gemma-token { color: #4338ca; background: #e0e7ff; border-radius: 3px; font-weight: 600; }
"""
EXPLANATION = (
    "The first rows as the model will read them in training: Gemma's special tokens are "
    "highlighted, whitespace and line breaks are kept."
)


def highlighted(text: str) -> str:
    """`text` as HTML with Gemma's special tokens marked (everything else escaped)."""
    return SPECIAL_TOKENS.sub(
        lambda match: f'<span class="gemma-token">{match.group(0)}</span>', html.escape(text)
    )


class LivePreview(ui.column):
    """Shows what `render(spec)` gives for the mapping being edited, newest request winning."""

    def __init__(self, render: Render) -> None:
        super().__init__()
        self.render = render
        self.asked = 0
        self.classes("w-full gap-3")
        ui.add_css(CSS)
        with self:
            ui.label(EXPLANATION).classes("text-body2 text-grey-7")
            self.examples = ui.column().classes("w-full gap-3 mapping-preview")

    def problem(self, message: str) -> None:
        """The form cannot make a mapping yet: say why instead of showing examples."""
        self.asked += 1
        self._show_problem(message)

    async def show(self, spec: MappingSpec) -> None:
        self.asked += 1
        asked = self.asked
        try:
            examples = await self.render(spec)
        except DomainError as exc:
            if asked == self.asked:
                self._show_problem(exc.message)
            return
        if asked != self.asked:  # the form changed while this preview was made
            return
        self.examples.clear()
        with self.examples:
            for example in examples:
                _example(example)

    def _show_problem(self, message: str) -> None:
        self.examples.clear()
        with self.examples, notice("warning"):
            ui.label(message).classes("preview-problem")


def _example(example: dict[str, Any]) -> None:
    with ui.column().classes("w-full gap-1 preview-example"):
        ui.label(f"Row {example['row'] + 1}").classes("text-caption text-weight-medium text-grey-7")
        if example["rendered"] is not None:
            ui.html(highlighted(example["rendered"]), tag="pre").classes(
                "w-full q-ma-none q-pa-md rounded-borders bg-grey-2 text-grey-10 gemma-rendered"
            )
            return
        with notice("error"), ui.column().classes("gap-0"):
            ui.label("This row cannot be used with this mapping:").classes("text-weight-medium")
            for problem in example["problems"]:
                ui.label(f"• {problem}")
