"""The live preview: the first rows in Gemma's chat format, exactly as training will see them.

A preference pair shows its prompt once and its chosen and rejected answers side by side; a
feedback row shows whether its completion is desirable."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, Sequence
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
.gemma-image { display: block; max-width: 160px; max-height: 160px; margin: 4px 0;
  border-radius: 4px; border: 1px solid #c7d2fe; }
.pair-chosen { border-left: 4px solid #16a34a; }
.pair-rejected { border-left: 4px solid #dc2626; }
"""
RENDERED = "w-full q-ma-none q-pa-md rounded-borders bg-grey-2 text-grey-10 gemma-rendered"
LABELS = {
    True: ("thumb_up", "Desirable", "positive"),
    False: ("thumb_down", "Undesirable", "negative"),
}
EXPLANATION = (
    "The first rows as the model will read them in training: Gemma's special tokens are "
    "highlighted, whitespace and line breaks are kept, and each image is shown where it stands "
    "(after `<start_of_image>`; the model reads it as 256 image tokens)."
)


def highlighted(text: str, images: Sequence[str] = ()) -> str:
    """`text` as HTML with Gemma's special tokens marked (everything else escaped); the n-th
    `<start_of_image>` is followed by the n-th of `images` (thumbnail data: URLs)."""
    pictures = iter(images)
    image_token = html.escape(START_OF_IMAGE)

    def mark(match: re.Match[str]) -> str:
        token = f'<span class="gemma-token">{match.group(0)}</span>'
        if match.group(0) != image_token:
            return token
        source = next(pictures, None)
        if source is None or not source.startswith("data:image/"):
            return token
        return f'{token}<img class="gemma-image" src="{html.escape(source)}" alt="image">'

    return SPECIAL_TOKENS.sub(mark, html.escape(text))


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


def _rendered(text: str, images: Sequence[str] = ()) -> None:
    ui.html(highlighted(text, images), tag="pre").classes(RENDERED)


def _pair(pair: dict[str, str], images: Sequence[str]) -> None:
    """The prompt (with its images), then the chosen and the rejected answer side by side."""
    _rendered(pair["prompt"], images)
    with ui.row().classes("w-full no-wrap gap-2 preview-pair"):
        for side in ("chosen", "rejected"):
            with ui.column().classes(f"col gap-1 pair-{side} q-pl-sm"):
                ui.label(side.capitalize()).classes("text-caption text-weight-medium pair-label")
                _rendered(pair[side])


def _example(example: dict[str, Any]) -> None:
    with ui.column().classes("w-full gap-1 preview-example"):
        with ui.row().classes("items-center gap-2"):
            ui.label(f"Row {example['row'] + 1}").classes(
                "text-caption text-weight-medium text-grey-7"
            )
            if example.get("label") is not None:
                icon, said, color = LABELS[bool(example["label"])]
                ui.badge(said, color=color).props("outline").classes("feedback-label")
                ui.icon(icon, color=color).classes("text-body2")
        images = example.get("images") or []
        if example.get("pair") is not None:
            _pair(example["pair"], images)
            return
        if example["rendered"] is not None:
            _rendered(example["rendered"], images)
            return
        with notice("error"), ui.column().classes("gap-0"):
            ui.label("This row cannot be used with this mapping:").classes("text-weight-medium")
            for problem in example["problems"]:
                ui.label(f"• {problem}")
