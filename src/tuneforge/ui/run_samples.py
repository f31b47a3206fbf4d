"""The answers a run's model gave to the sample prompts at each evaluation, newest first, beside
the reference answers, so you can read how it changes; a GRPO run's answers with each grader's
grade and their total reward; a vision run's prompts with their images' thumbnails (the sample's
`images`: small JPEG `data:` URLs the worker made with `tuneforge.data.images.thumbnail`)."""

from __future__ import annotations

from typing import Any

from nicegui import ui

Samples = dict[int, list[dict[str, Any]]]  # step -> items

TEXT = "text-body2 q-pa-sm rounded-borders w-full sample-text"
THUMBNAIL = "w-32 h-32 rounded-borders sample-image"
#: Only image data URLs are shown (never a URL the browser would fetch).
IMAGE_URL = "data:image/"
PRE = "white-space: pre-wrap; overflow-wrap: anywhere"


class SamplesView(ui.column):
    """A step picker and the prompts, answers and references at that step; it follows the
    newest evaluation until a step is picked by hand."""

    def __init__(self, waiting: str) -> None:
        super().__init__()
        self.samples: Samples = {}
        self.following = True
        self.classes("w-full gap-3 run-samples")
        with self:
            with ui.row().classes("w-full items-center justify-between"):
                with ui.column().classes("gap-0"):
                    ui.label("Sample answers").classes("text-subtitle1 text-weight-medium")
                    ui.label("What the model answers at each evaluation.").classes(
                        "text-body2 text-grey-7"
                    )
                self.step = (
                    ui.select({}, label="At step", on_change=self._picked)
                    .props("outlined dense options-dense")
                    .classes("w-40 sample-step")
                )
            self.body = ui.column().classes("w-full gap-4")
            self.nothing = ui.label(waiting).classes("text-body2 text-grey-6")
        self.step.set_visibility(False)

    def take(self, samples: Samples) -> None:
        """Take the samples as they are now (new steps may have been added)."""
        if samples.keys() == self.samples.keys() and samples == self.samples:
            return
        self.samples = dict(samples)
        steps = sorted(self.samples, reverse=True)
        newest = steps[0] if steps else None
        self.step.set_options({s: self._step_label(s, newest) for s in steps})
        self.step.set_visibility(bool(steps))
        self.nothing.set_visibility(not steps)
        if self.following or self.step.value not in self.samples:
            self.following = True
            if self.step.value == newest:
                self._show(newest)
            else:
                self.step.set_value(newest)  # shows it

    @staticmethod
    def _step_label(step: int, newest: int | None) -> str:
        if step == 0:
            return "0 (before training)"
        return f"{step} (newest)" if step == newest else str(step)

    def _picked(self) -> None:
        value = self.step.value
        if value is None:
            return
        steps = sorted(self.samples, reverse=True)
        self.following = bool(steps) and value == steps[0]
        self._show(value)

    def _show(self, step: int | None) -> None:
        self.body.clear()
        if step is None:
            return
        with self.body:
            for number, item in enumerate(self.samples.get(step, []), start=1):
                with ui.column().classes("w-full gap-2 sample-item"):
                    ui.label(f"Prompt {number}").classes("text-caption text-grey-7")
                    _thumbnails(item.get("images") or [])
                    ui.label(item.get("prompt", "")).classes(
                        f"{TEXT} bg-grey-2 sample-prompt"
                    ).style(PRE)
                    with ui.grid().classes("w-full gap-3 grid-cols-1 md:grid-cols-2"):
                        _text("Answer", item.get("answer", ""), "bg-indigo-1 sample-answer")
                        if item.get("reference") is not None:
                            _text("Reference", item["reference"], "bg-green-1 sample-reference")
                    if item.get("grades") is not None:
                        _grades(item["grades"], item.get("reward"))


def _thumbnails(images: list[Any]) -> None:
    """The prompt's images, small, in the order the prompt has them."""
    shown = [src for src in images if isinstance(src, str) and src.startswith(IMAGE_URL)]
    if not shown:
        return
    with ui.row().classes("gap-2 sample-images"):
        for number, src in enumerate(shown, start=1):
            ui.image(src).classes(THUMBNAIL).props(f'fit=contain alt="Image {number}"')


def _text(title: str, text: str, classes: str) -> None:
    with ui.column().classes("w-full gap-1 min-w-0"):
        ui.label(title).classes("text-caption text-grey-7")
        ui.label(text or "(empty)").classes(f"{TEXT} {classes}").style(PRE)


def _grades(grades: dict[str, float], reward: float | None) -> None:
    """Each grader's grade of the answer (0..1), and the reward they add up to."""
    with ui.row().classes("w-full items-center gap-2 sample-grades"):
        if reward is not None:
            ui.label(f"Reward {reward:.2f}").classes(
                "text-body2 text-weight-medium q-mr-sm sample-reward"
            )
        for name, grade in grades.items():
            colour = "positive" if grade >= 1 else "negative" if grade <= 0 else "warning"
            ui.badge(f"{name} {grade:.2f}", color=colour).props("outline").classes(
                "text-body2 sample-grade"
            )
