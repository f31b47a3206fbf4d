"""A run's settings on screen: those changed from the defaults, then all of them."""

from __future__ import annotations

import json
from typing import Any

from nicegui import ui

from tuneforge.training.registry import DEFAULT_TRAINER, UnknownTrainer, recipe
from tuneforge.training.spec import TrainingBase
from tuneforge.ui.run_format import setting
from tuneforge.ui.train_form import label

#: Settings the pages name on their own (what was trained, on what, how), not among the changes.
NAMED = frozenset({"base_model", "dataset_id", "method", "name", "trainer"})


def trainer_title(spec: dict[str, Any]) -> str:
    """The title of the trainer a run's `spec` names ("Direct preference optimisation (DPO)")."""
    trainer = str(spec.get("trainer", DEFAULT_TRAINER))
    try:
        return recipe(trainer).title
    except UnknownTrainer:
        return trainer


def changed_settings(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """The settings in which a run's `spec` differs from the defaults of its trainer's spec (of
    the settings every trainer shares, for a trainer no longer registered)."""
    try:
        fields = recipe(spec.get("trainer", DEFAULT_TRAINER)).spec.model_fields
    except UnknownTrainer:
        fields = TrainingBase.model_fields
    shown = []
    for name, field in fields.items():
        if name in NAMED or name not in spec:
            continue
        if spec[name] != field.get_default(call_default_factory=True):
            shown.append((name, spec[name]))
    return shown


def settings_view(spec: dict[str, Any]) -> None:
    changed = changed_settings(spec)
    ui.label("Changed from the defaults").classes("text-body2 text-weight-medium q-mt-sm")
    if changed:
        with ui.grid(columns="auto 1fr").classes("gap-x-6 gap-y-1 text-body2 run-changed"):
            for name, value in changed:
                ui.label(label(name)).classes("text-grey-7")
                ui.label(setting(value)).classes("font-mono")
    else:
        ui.label("Nothing: the default settings.").classes("text-body2 text-grey-7")
    with ui.expansion("All settings", icon="tune").classes("w-full").props("dense"):
        ui.code(json.dumps(spec, indent=2), language="json").classes("w-full")
