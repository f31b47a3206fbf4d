"""The Train page's editors for the fields a form cannot make from their types alone: the model a
run starts from (one of the user's fine-tunes of the chosen base: an earlier SFT, say, continued
by DPO or GRPO), and GRPO's graders (the grader builder, with "Try on a sample" under it).

`follow()` keeps them in step with the pickers: the models offered are those of the chosen base,
the column pickers list the chosen dataset's columns, and the sample is its first test row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneforge.db.tables import Dataset, Model, User
from tuneforge.ui.grader_try import TryPanel
from tuneforge.ui.graders import GraderBuilder
from tuneforge.ui.picker import Picker
from tuneforge.ui.train_fit import grader_columns
from tuneforge.ui.train_form import EditorFactory

#: What continuing a model brings along: its adapter's shape, which the run must keep.
ADAPTER_SHAPE = ("lora_r", "lora_alpha", "lora_target_modules", "use_rslora")
NO_START = "None of your models is a fine-tune of this base yet: the run starts from the base."


def start_label(model: Model) -> str:
    trainer = str(model.spec.get("trainer", "sft")).upper()
    kind = "adapter" if model.kind == "adapter" else "full weights"
    return f"{model.name} · {trainer} · {kind}"


class TrainEditors:
    """The editors' state; `factories()` gives the form its editors, `started()` the settings
    that follow from the model a run starts from."""

    def __init__(
        self, user: User, models: list[Model], apply: Callable[[dict[str, Any]], None]
    ) -> None:
        self.user = user
        self.models = {m.id: m for m in models}
        self.apply = apply
        self.base: str | None = None
        self.columns: list[str] = []
        self.row: dict[str, Any] | None = None
        self.start: Picker | None = None
        self.graders: GraderBuilder | None = None
        self.trial: TryPanel | None = None

    def factories(self) -> dict[str, EditorFactory]:
        return {"start_from": self._start_from, "graders": self._graders}

    def follow(self, dataset: Dataset | None, base: str | None, row: dict[str, Any] | None) -> None:
        """The pickers changed: offer what fits the dataset `dataset` and the base `base`."""
        self.base = base
        self.columns = grader_columns(dataset) if dataset else []
        self.row = row
        if self.start is not None:
            self._offer_starts()
        if self.graders is not None:
            self.graders.offer_columns(self.columns)
        if self.trial is not None:
            self.trial.take_row(row)

    def _start_from(self, text: str, schema: dict[str, Any], value: Any) -> Picker:
        self.start = (
            Picker({}, label=text, clearable=True, on_change=self._started)
            .props("outlined dense")
            .classes("w-full train-start-from")
        )
        self._offer_starts()
        if value in self.models:
            self.start.set_value(value)
        return self.start

    def _offer_starts(self) -> None:
        assert self.start is not None
        offered = {m.id: m for m in self.models.values() if m.base_model == self.base}
        self.start.offer(
            {i: start_label(m) for i, m in offered.items()},
            captions={i: f"Made {m.created_at:%Y-%m-%d %H:%M}" for i, m in offered.items()},
        )
        if self.start.value not in offered:
            self.start.set_value(None)
        self.start.props(f'hint="{"" if offered else NO_START}"')
        self.start.set_enabled(bool(offered))

    def _started(self) -> None:
        """A model to start from was picked: its adapter's shape and method come along."""
        chosen = self.models.get(self.start.value) if self.start is not None else None
        if chosen is None:
            return
        values = {k: chosen.spec[k] for k in ADAPTER_SHAPE if k in chosen.spec}
        if chosen.kind == "full":
            values["method"] = "full"
        elif chosen.spec.get("method") in ("lora", "qlora"):
            values["method"] = chosen.spec["method"]
        self.apply(values)

    def _graders(self, text: str, schema: dict[str, Any], value: Any) -> GraderBuilder:
        self.graders = GraderBuilder(self.columns, value)
        self.trial = TryPanel(
            self.user, lambda: self.graders.value if self.graders else [], self.row
        )
        self.graders.on_value_change(self.trial.follow)
        return self.graders
