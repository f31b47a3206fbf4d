"""What a dataset is at a glance: the summary cards of raw and processed datasets."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from nicegui import ui

from tuneforge.data.limits import size_text
from tuneforge.db.tables import Dataset
from tuneforge.ui.formatting import when

ORIGINS = {
    "upload": "Uploaded",
    "huggingface": "From Hugging Face",
    "server_path": "From the server",
}
NOTICES = {
    "warning": ("warning", "bg-amber-1 text-brown-9"),
    "error": ("error_outline", "bg-red-1 text-negative"),
}


def card(title: str) -> ui.card:
    """A section of a dataset page, with its title."""
    section = ui.card().classes("w-full q-pa-lg gap-4")
    with section:
        ui.label(title).classes("text-subtitle1 text-weight-medium")
    return section


def notice(kind: str, text: str | None = None) -> ui.row:
    """A coloured line with an icon (`kind`: warning or error); enter it to add more."""
    icon, colors = NOTICES[kind]
    row = ui.row().classes(f"w-full items-start no-wrap gap-2 q-pa-sm rounded-borders {colors}")
    with row:
        ui.icon(icon).classes("q-mt-xs")
        if text is not None:
            ui.label(text).classes(f"dataset-{kind}")
    return row


def _facts(pairs: Iterable[tuple[str, str]]) -> ui.grid:
    """Names and values in two columns; enter the grid to add more."""
    grid = ui.grid(columns="auto 1fr").classes(
        "gap-x-6 gap-y-2 text-body2 content-start dataset-facts"
    )
    with grid:
        for name, value in pairs:
            ui.label(name).classes("text-grey-7")
            ui.label(value)
    return grid


def _splits(dataset: Dataset) -> str:
    return " · ".join(f"{name} {count:,}" for name, count in dataset.splits.items())


def raw_summary(dataset: Dataset) -> None:
    with card("Summary"):
        _facts(
            (
                ("Origin", f"{ORIGINS.get(dataset.origin, dataset.origin)}: {dataset.origin_ref}"),
                ("Format", dataset.format or "not recognised: check the mapping below"),
                (
                    "Rows",
                    f"{dataset.rows:,}"
                    + (f" ({_splits(dataset)})" if len(dataset.splits) > 1 else ""),
                ),
                ("Size", size_text(dataset.size_bytes)),
                ("Created", when(dataset.created_at)),
            )
        )
        with ui.row().classes("gap-2 dataset-columns"):
            for column in dataset.columns:
                with ui.element("q-chip").props("dense square outline"):
                    ui.label(column["name"]).classes("text-weight-medium")
                    ui.label(column["type"]).classes("q-ml-xs text-grey-6 font-mono")
        for warning in dataset.warnings:
            notice("warning", warning)


def processed_summary(dataset: Dataset) -> None:
    config = dataset.config or {}
    with card("Summary"):
        with ui.row().classes("w-full gap-8 items-start"):
            with _facts(
                (
                    ("Splits", _splits(dataset) or "—"),
                    ("Format", dataset.format or "—"),
                    ("Size", size_text(dataset.size_bytes)),
                    ("Created", when(dataset.created_at)),
                )
            ).classes("col-12 col-md"):
                ui.label("Source").classes("text-grey-7")
                if dataset.source_id:
                    ui.link(dataset.origin_ref, f"/datasets/{dataset.source_id}")
                else:
                    ui.label(f"{dataset.origin_ref} (deleted)")
            _facts(_settings_used(config)).classes("col-12 col-md")
        with ui.expansion("All settings", icon="tune").classes("w-full").props("dense"):
            ui.code(json.dumps(config, indent=2), language="json").classes("w-full")
        if dataset.error:
            notice("error", dataset.error)


def _settings_used(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The processing settings that shaped the dataset, in words."""
    mapping, split = config.get("mapping", {}), config.get("split", {})
    split_text = split.get("mode", "—")
    if split.get("mode") == "manual":
        size = split.get("test_size", 0)
        split_text += f", test {size:.0%}" if size < 1 else f", test {size:,.0f} rows"
    if split.get("sample_size"):
        split_text += f", a sample of {split['sample_size']:,} rows"
    return [
        ("Mapping", f"{mapping.get('mode', '—')} · {mapping.get('layout', '—')}"),
        ("Split", f"{split_text} (seed {split.get('seed', '—')})"),
        ("Max length", f"{config.get('max_length', 0):,} tokens"),
        ("Rows with problems", "dropped" if config.get("on_problem") == "drop" else "refused"),
        ("Duplicates", "dropped" if config.get("drop_duplicates") else "kept"),
        ("Label column", config.get("label_column") or "—"),
    ]
