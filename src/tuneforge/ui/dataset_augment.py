"""The Augmentation section of a processed dataset's page: the methods with their settings (the
LLM methods with their prompts and the model that rewrites), a preview of the first train rows
beside their variants (with rows, tokens and cost), and the button that starts the
`dataset_augment` job."""

from __future__ import annotations

from typing import Any

from nicegui import ui
from pydantic import BaseModel, ValidationError

from tuneforge.data.augment import spec as specs
from tuneforge.data.augment.spec import IMAGE_METHODS, LLM_METHODS, AugmentSpec
from tuneforge.db.tables import Dataset, User
from tuneforge.schemas.augmentation import AugmentPreview
from tuneforge.services import augmentation as service
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.dataset_fields import (
    blank,
    default,
    description,
    number,
    problems,
    select,
    text,
)
from tuneforge.ui.dataset_preview import CSS, RENDERED, highlighted
from tuneforge.ui.generator_fields import GeneratorFields

SECTION = "text-subtitle2 text-grey-9"
METHODS: dict[str, type[BaseModel]] = {
    "synonym": specs.SynonymMethod,
    "insert": specs.InsertMethod,
    "swap": specs.SwapMethod,
    "delete": specs.DeleteMethod,
    "paraphrase": specs.ParaphraseMethod,
    "back_translation": specs.BackTranslationMethod,
    "flip": specs.FlipMethod,
    "crop": specs.CropMethod,
    "rotate": specs.RotateMethod,
    "color": specs.ColorMethod,
}
#: Each method's one setting.
SETTING = {
    "flip": "direction",
    "rotate": "degrees",
    "paraphrase": "probability",
    "back_translation": "probability",
}
#: The LLM methods' further settings: text fields, then prompts.
WORDS = {"back_translation": ("language", "source_language")}
PROMPTS = {"paraphrase": ("prompt",), "back_translation": ("prompt", "back_prompt")}
EXPLANATION = (
    "Adds variants of the train rows to a new dataset; the test split is copied unchanged and "
    "each new row names its source row and methods. Synonym and insert use WordNet on the "
    "server; paraphrase and back-translation ask the language model chosen below."
)


class _MethodRow:
    def __init__(self, name: str) -> None:
        model = METHODS[name]
        self.name = name
        setting = SETTING.get(name, "rate")
        with ui.row().classes("w-full items-start no-wrap gap-4"):
            self.on = (
                ui.checkbox(name.replace("_", " "), value=name == "swap")
                .props("dense")
                .classes("w-36 q-mt-sm")
            )
            self.on.classes(f"augment-method-{name}")
            with ui.column().classes("col"):
                ui.markdown(model.__doc__ or "").classes("text-body2 text-grey-8")
                if setting == "direction":
                    self.value: Any = select(model, setting, default(model, setting))
                else:
                    self.value = number(model, setting, default(model, setting), integer=False)
                self.value.bind_visibility_from(self.on, "value")
                self.more: dict[str, Any] = {}
                for field in WORDS.get(name, ()):
                    self.more[field] = text(model, field, default(model, field))
                for widget in self.more.values():
                    widget.bind_visibility_from(self.on, "value")
                if name in PROMPTS:
                    with ui.expansion("Prompts").classes("w-full") as prompts:
                        for field in PROMPTS[name]:
                            self.more[field] = (
                                ui.textarea(
                                    field.replace("_", " ").capitalize(),
                                    value=default(model, field),
                                )
                                .props("outlined dense autogrow")
                                .classes(f"w-full augment-{name}-{field}")
                            )
                            ui.markdown(description(model, field)).classes("field-help text-grey-7")
                    prompts.bind_visibility_from(self.on, "value")
        self.setting = setting

    def method(self, generator: dict[str, Any]) -> dict[str, Any] | None:
        if not self.on.value:
            return None
        chosen = {"name": self.name, self.setting: self.value.value}
        chosen |= {field: widget.value for field, widget in self.more.items()}
        if self.name in LLM_METHODS:
            chosen["generator"] = generator
        return chosen


class AugmentForm(ui.column):
    """Choose methods, preview them on the first train rows, start the job."""

    def __init__(self, user: User, source: Dataset) -> None:
        super().__init__()
        self.user = user
        self.source_id = source.id
        has_images = any(column["name"] == "images" for column in source.columns)
        names = [n for n in METHODS if has_images or n not in IMAGE_METHODS]
        self.classes("w-full gap-4 augment-form")
        ui.add_css(CSS)
        with self:
            ui.label(EXPLANATION).classes("text-body2 text-grey-7 -mt-3")
            ui.label("Methods").classes(SECTION)
            self.rows = [_MethodRow(name) for name in names]
            with ui.column().classes("w-full gap-2 augment-generator") as self.llm:
                ui.label("Language model (paraphrase, back-translation)").classes(SECTION)
                self.generator = GeneratorFields()
                self.price = (
                    ui.number(
                        "Price per 1k tokens (for the cost estimate)", value=0, min=0, max=1000
                    )
                    .props("outlined dense")
                    .classes("w-64 augment-price")
                )
            self.llm.set_visibility(False)
            for row in self.rows:
                if row.name in LLM_METHODS:
                    row.on.on_value_change(self._show_generator)
            ui.label("Variants").classes(SECTION)
            with ui.grid().classes("w-full gap-4 grid-cols-1 md:grid-cols-4"):
                self.copies = number(AugmentSpec, "copies", default(AugmentSpec, "copies"))
                self.combine = select(AugmentSpec, "combine", default(AugmentSpec, "combine"))
                self.rewrite = select(AugmentSpec, "rewrite", default(AugmentSpec, "rewrite"))
                self.seed = number(AugmentSpec, "seed", default(AugmentSpec, "seed"))
            self.name = text(AugmentSpec, "name", None).classes("w-full md:w-1/2")
            self.name.props(f'placeholder="{source.name} (augmented)"')
            with ui.row().classes("items-center gap-4"):
                self.preview_button = ui.button("Preview", icon="visibility", on_click=self.preview)
                self.preview_button.props("outline").classes("augment-preview-button")
                self.start = ui.button("Augment", icon="auto_awesome", on_click=self.augment)
                self.start.props("unelevated").classes("augment-start")
            self.shown = ui.column().classes("w-full gap-3 augment-preview")

    def _show_generator(self) -> None:
        self.llm.set_visibility(any(r.on.value for r in self.rows if r.name in LLM_METHODS))

    def spec(self) -> AugmentSpec:
        """The form as a spec; raises pydantic's ValidationError when it does not fit."""
        generator = self.generator.value()
        methods = [m for m in (row.method(generator) for row in self.rows) if m is not None]
        return AugmentSpec.model_validate(
            {
                "name": blank(self.name.value),
                "methods": methods,
                "copies": self.copies.value,
                "combine": self.combine.value,
                "rewrite": self.rewrite.value,
                "seed": self.seed.value,
            }
        )

    def _spec_or_warn(self) -> AugmentSpec | None:
        try:
            return self.spec()
        except ValidationError as exc:
            ui.notify(problems(exc), type="warning", multi_line=True)
            return None

    async def preview(self) -> None:
        spec = self._spec_or_warn()
        if spec is None:
            return
        self.preview_button.props("loading")
        try:
            with reported():
                shown = await read(
                    service.preview_augmentation,
                    state().store,
                    state().settings,
                    self.user,
                    self.source_id,
                    spec,
                    3,
                    float(self.price.value or 0),
                )
                self._show(shown)
        finally:
            self.preview_button.props(remove="loading")

    def _show(self, shown: AugmentPreview) -> None:
        self.shown.clear()
        with self.shown:
            copied = ", ".join(f"{n} {r:,}" for n, r in shown.copied_splits.items()) or "none"
            ui.label(
                f"Train rows {shown.rows_in:,} → about {shown.rows_out:,} (at most "
                f"{shown.rows_out_max:,}) · tokens {shown.tokens_in:,} → {shown.tokens_out:,} · "
                f"copied unchanged: {copied} · cost {shown.cost.money:g} {shown.cost.currency}, "
                f"about {shown.cost.seconds:g} s"
            ).classes("text-body2 text-weight-medium augment-counts")
            ui.label(shown.cost.note).classes("text-caption text-grey-7")
            if shown.llm is not None:
                ui.label(
                    f"LLM: about {shown.llm.requests:,} requests, {shown.llm.prompt_tokens:,} "
                    f"prompt + {shown.llm.completion_tokens:,} reply tokens"
                ).classes("text-body2 augment-llm")
            for problem in shown.problems:
                ui.label(problem).classes("text-caption text-orange-9 augment-problem")
            for example in shown.examples:
                with ui.row().classes("w-full no-wrap gap-3 items-start augment-example"):
                    with ui.column().classes("col gap-1"):
                        ui.label(f"Row {example.row + 1} · {example.tokens} tokens").classes(
                            "text-caption text-weight-medium text-grey-7"
                        )
                        ui.html(highlighted(example.rendered, example.images), tag="pre").classes(
                            RENDERED
                        )
                    with ui.column().classes("col gap-1"):
                        if not example.variants:
                            ui.label("No variant: none came out different from the row.").classes(
                                "text-caption text-grey-7"
                            )
                        for variant in example.variants:
                            ui.label(f"{variant.methods} · {variant.tokens} tokens").classes(
                                "text-caption text-weight-medium text-primary augment-variant"
                            )
                            ui.html(
                                highlighted(variant.rendered, variant.images), tag="pre"
                            ).classes(RENDERED)

    async def augment(self) -> None:
        spec = self._spec_or_warn()
        if spec is None:
            return
        self.start.props("loading")
        try:
            with reported():
                dataset = await call(
                    service.augment_dataset, state().settings, self.user, self.source_id, spec
                )
                ui.navigate.to(f"/datasets/{dataset.id}")
        finally:
            self.start.props(remove="loading")
