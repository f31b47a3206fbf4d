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
        "/train",
        "Train",
        "model_training",
        "Here you will pick a Gemma model and a dataset, choose a recipe and its settings, "
        "and press Train.",
        "Training runs will appear as jobs; the Jobs page already shows how they are tracked.",
    ),
    Placeholder(
        "/models",
        "Models",
        "inventory_2",
        "Your fine-tuned models will be listed here, ready to take home as a LoRA adapter, a "
        "merged model or a GGUF file for Ollama and llama.cpp.",
        "There is nothing to list until the first training run finishes.",
    ),
    Placeholder(
        "/playground",
        "Playground",
        "forum",
        "Here you will chat with a fine-tuned model side by side with the model it started from.",
        "It opens once models can be trained.",
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
            ui.button("Open Jobs", icon="work_history", on_click=lambda: ui.navigate.to("/jobs"))

    page(placeholder.path, placeholder.title)(build)


for _placeholder in PLACEHOLDERS:
    _register(_placeholder)
