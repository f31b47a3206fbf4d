"""The Settings page's quota card: what the user's work takes beside the limits an
administrator set."""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from tuneforge.data.limits import size_text
from tuneforge.db.tables import User
from tuneforge.services import quotas
from tuneforge.ui.backend import read, state


def _line(
    name: str, used: int, limit: int | None, shown: Callable[[int], str], reserved: int = 0
) -> None:
    """`used` of `limit`, and `reserved` more counted against it (a bar when there is a limit)."""
    with ui.column().classes("w-full gap-1 quota-line"):
        with ui.row().classes("w-full justify-between text-body2"):
            ui.label(name)
            of_limit = f" of {shown(limit)}" if limit is not None else ", no limit"
            ui.label(f"{shown(used)}{of_limit}")
        if reserved:
            ui.label(f"and {shown(reserved)} reserved by imports in progress").classes(
                "text-caption text-grey-7 quota-reserved"
            )
        if limit is not None:
            share = 1.0 if limit == 0 else min((used + reserved) / limit, 1.0)
            color = "negative" if share >= 1 else "warning" if share >= 0.8 else "primary"
            ui.linear_progress(value=share, show_value=False, color=color).props("rounded")


async def quota_section(user: User) -> None:
    view = await read(quotas.quota_view, user, state().settings)
    with ui.card().classes("w-full q-pa-lg gap-3 quota-card"):
        ui.link_target("quota").classes("absolute")  # /settings#quota
        ui.label("Usage and quota").classes("text-subtitle1 text-weight-medium")
        ui.markdown(
            "Storage counts your datasets, models and exports; a Hugging Face import may "
            "download only what is left of it, which is reserved until the import ends. An "
            "administrator sets the limits: ask one to raise them."
        ).classes("text-body2 text-grey-8")
        _line(
            "Storage",
            view.storage_bytes_used,
            view.storage_bytes_limit,
            size_text,
            view.storage_bytes_reserved,
        )
        _line(
            "Jobs queued or running", view.jobs_in_flight, view.concurrent_jobs_limit, "{:,}".format
        )
        _line(
            "Jobs started in the last 24 hours",
            view.jobs_today,
            view.jobs_per_day_limit,
            "{:,}".format,
        )
