"""What a run would take on this machine (peak memory against what is free, duration), its
warnings, and the refusal of a run that cannot work here: the card beside the Train button."""

from __future__ import annotations

from nicegui import ui

from tuneforge.data.limits import size_text
from tuneforge.training.estimate import Estimate
from tuneforge.ui.run_format import count, span

NOTICE = "w-full items-start no-wrap gap-2 q-pa-sm rounded-borders text-body2"
TIGHT = 0.85  # of the available memory: fits, but little is left


class EstimatePanel(ui.column):
    """Shows an `Estimate`, a problem with the settings instead, or that one is on its way."""

    def __init__(self) -> None:
        super().__init__()
        self.classes("w-full gap-3 train-estimate")
        with self:
            with ui.row().classes("w-full items-center justify-between"):
                ui.label("Estimate").classes("text-subtitle1 text-weight-medium")
                self.kind = ui.badge().props("outline rounded").classes("estimate-kind")
                with self.kind:
                    self.kind_help = ui.tooltip()
                self.spinner = ui.spinner(size="xs")
            self.body = ui.column().classes("w-full gap-3")
        self.kind.set_visibility(False)

    def busy(self, busy: bool) -> None:
        self.spinner.set_visibility(busy)

    def problem(self, message: str) -> None:
        """The settings cannot be estimated: say why."""
        self.kind.set_visibility(False)
        self.body.clear()
        with self.body, ui.row().classes(f"{NOTICE} bg-amber-1 text-brown-9 estimate-problem"):
            ui.icon("warning").classes("q-mt-xs")
            ui.label(message)

    def show(self, estimate: Estimate) -> None:
        self.kind.set_visibility(True)
        if estimate.calibrated:
            self.kind.set_text("measured here")
            self.kind.props("color=positive")
            self.kind_help.set_text(
                f"Corrected by {_runs(estimate.measured_runs)} measured on this machine with "
                "this model, method and setup (any batch size and max length)."
            )
        else:
            self.kind.set_text("rough")
            self.kind.props("color=grey-7")
            self.kind_help.set_text(
                "Worked out from the model's size. After a first run on this machine, "
                "estimates are corrected by the speed and memory measured there."
            )
        self.body.clear()
        with self.body:
            self._memory(estimate)
            with ui.grid(columns="auto 1fr").classes("gap-x-4 gap-y-1 text-body2 estimate-facts"):
                for name, value in (
                    ("Duration", _duration(estimate.duration_seconds)),
                    ("Steps", f"{estimate.steps:,}"),
                    ("Tokens", count(estimate.tokens)),
                    ("Trains", f"{count(estimate.trainable_parameters)} parameters"),
                    ("Runs on", f"{estimate.device} · {estimate.precision}"),
                ):
                    ui.label(name).classes("text-grey-7")
                    ui.label(value).classes(f"estimate-{name.lower().replace(' ', '-')}")
            for message in estimate.messages:
                with ui.row().classes(f"{NOTICE} bg-amber-1 text-brown-9 estimate-warning"):
                    ui.icon("info").classes("q-mt-xs")
                    ui.label(message)
            if estimate.refusal:
                with ui.row().classes(f"{NOTICE} bg-red-1 text-negative estimate-refusal"):
                    ui.icon("block").classes("q-mt-xs")
                    ui.label(estimate.refusal)

    @staticmethod
    def _memory(estimate: Estimate) -> None:
        peak, available = estimate.peak_memory_bytes, estimate.available_memory_bytes
        share = peak / available if available else float("inf")
        color = "negative" if share > 1 else "warning" if share > TIGHT else "positive"
        with ui.column().classes("w-full gap-1 estimate-memory"):
            with ui.row().classes("w-full justify-between text-body2"):
                ui.label("Peak memory").classes("text-grey-7")
                ui.label(f"{size_text(peak)} of {size_text(available)} free").classes(
                    "text-weight-medium"
                )
            ui.linear_progress(value=min(share, 1.0), show_value=False, size="8px").props(
                f"rounded color={color} track-color=grey-3"
            )
            if share > 1:
                ui.label("More than is free on this machine now.").classes(
                    "text-caption text-negative"
                )
            if estimate.measured_runs:
                ui.label(
                    f"Corrected by {_runs(estimate.measured_runs)} measured here; the memory "
                    f"model alone says {size_text(estimate.memory.total_bytes)}."
                ).classes("text-caption text-grey-7 estimate-memory-corrected")


def _runs(count: int) -> str:
    return "1 run" if count == 1 else f"{count} runs"


def _duration(seconds: float) -> str:
    return "under a second" if seconds < 1 else f"about {span(seconds)}"
