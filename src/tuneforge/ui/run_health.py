"""Did it work? The run page's health flags (`training.health`), at the top of the page while the
run goes: each says what was seen and what to change; errors in red, warnings in amber."""

from __future__ import annotations

from nicegui import ui

from tuneforge.training.health import Flag

STYLES = {
    "error": ("error", "bg-red-1 text-negative"),
    "warning": ("warning", "bg-amber-1 text-brown-9"),
}


class HealthView(ui.column):
    """The flags as they are now; redrawn only when they change."""

    def __init__(self) -> None:
        super().__init__()
        self.flags: list[Flag] = []
        self.classes("w-full gap-2 run-health")
        self.set_visibility(False)

    def show(self, flags: list[Flag]) -> None:
        if flags == self.flags:
            return
        self.flags = list(flags)
        self.set_visibility(bool(flags))
        self.clear()
        with self:
            for flag in flags:
                icon, colours = STYLES[flag.level]
                with ui.row().classes(
                    f"w-full no-wrap items-start gap-3 q-pa-md rounded-borders {colours} "
                    f"health-flag health-{flag.code}"
                ):
                    ui.icon(icon, size="sm").classes("q-mt-xs")
                    with ui.column().classes("gap-1 min-w-0"):
                        ui.label(flag.title).classes("text-subtitle1 text-weight-medium")
                        ui.label(flag.detail).classes("text-body2 health-detail").style(
                            "overflow-wrap: anywhere"
                        )
                        ui.label(f"What to change: {flag.advice}").classes(
                            "text-body2 text-weight-medium health-advice"
                        )
