"""The Settings page's quota card: what the user's work takes beside the limits an
administrator set."""

from __future__ import annotations

from nicegui import ui

from tuneforge.data.limits import size_text
from tuneforge.db.tables import User
from tuneforge.services import quotas
from tuneforge.ui.backend import read, state


def _line(name: str, used: int, limit: int | None, shown: str, shown_limit: str) -> None:
    with ui.column().classes("w-full gap-1 quota-line"):
        with ui.row().classes("w-full justify-between text-body2"):
            ui.label(name)
            ui.label(f"{shown} of {shown_limit}" if limit is not None else f"{shown}, no limit")
        if limit is not None:
            share = 1.0 if limit == 0 else min(used / limit, 1.0)
            color = "negative" if share >= 1 else "warning" if share >= 0.8 else "primary"
            ui.linear_progress(value=share, show_value=False, color=color).props("rounded")


async def quota_section(user: User) -> None:
    view = await read(quotas.quota_view, user, state().settings)
    with ui.card().classes("w-full q-pa-lg gap-3 quota-card"):
        ui.link_target("quota").classes("absolute")  # /settings#quota
        ui.label("Usage and quota").classes("text-subtitle1 text-weight-medium")
        ui.markdown(
            "Storage counts your datasets, models and exports; a Hugging Face import may "
            "download only what is left of it. An administrator sets the limits: ask one to "
            "raise them."
        ).classes("text-body2 text-grey-8")
        storage_limit = view.storage_bytes_limit
        _line(
            "Storage",
            view.storage_bytes_used,
            storage_limit,
            size_text(view.storage_bytes_used),
            size_text(storage_limit) if storage_limit is not None else "",
        )
        _line(
            "Jobs queued or running",
            view.jobs_in_flight,
            view.concurrent_jobs_limit,
            f"{view.jobs_in_flight:,}",
            f"{view.concurrent_jobs_limit:,}" if view.concurrent_jobs_limit is not None else "",
        )
        _line(
            "Jobs started in the last 24 hours",
            view.jobs_today,
            view.jobs_per_day_limit,
            f"{view.jobs_today:,}",
            f"{view.jobs_per_day_limit:,}" if view.jobs_per_day_limit is not None else "",
        )
