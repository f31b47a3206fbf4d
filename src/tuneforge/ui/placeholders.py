"""The sections still to come: each says what it will hold and what works today."""

from __future__ import annotations

from dataclasses import dataclass

from nicegui import ui

from tuneforge.db.tables import User
from tuneforge.ui.layout import EmptyState, heading, page


@dataclass(frozen=True)
class Placeholder:
    path: str
    title: str
    icon: str
    coming: str
    today: str


PLACEHOLDERS = (
    Placeholder(
        "/playground",
        "Playground",
        "forum",
        "Here you will chat with a fine-tuned model side by side with the model it started from.",
        "Until then, your fine-tuned models, with their curves and sample answers, are on the "
        "Models page.",
    ),
)


def _register(placeholder: Placeholder) -> None:
    async def build(user: User) -> None:
        heading(placeholder.title)
        with (
            ui.card().classes("w-full"),
            EmptyState(placeholder.icon, "Coming soon", placeholder.coming),
        ):
            ui.label(placeholder.today).classes("text-body2 text-grey-7 q-mt-md")
            ui.button("Open Models", icon="inventory_2", on_click=lambda: ui.navigate.to("/models"))

    page(placeholder.path, placeholder.title)(build)


for _placeholder in PLACEHOLDERS:
    _register(_placeholder)
