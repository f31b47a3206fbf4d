"""The training settings as a form made from the chosen trainer's spec (its JSON schema): a widget
per field by its type (numbers within their bounds, a number or a word for a field that takes
either, choices for literals, switches for flags, chips for lists, a JSON box for an object),
grouped as the spec groups them, each with its description as help, and what the spec says is
wrong with a field under it (`field_problems`). No field is written by hand: a field added to a
spec appears here, and so does a trainer added to the registry (`trainers()`). A field the types
cannot describe well (a list of graders, a model id picked among the user's models) gets the
editor its page gives (`editors`). The grader builder makes one of these forms per grader, from
the grader's spec."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nicegui import ui
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tuneforge.training.registry import recipes
from tuneforge.ui.number_field import Bounds, NumberOrWord, bounded_number

Changed = Callable[[], Any]
#: Makes a field's editor where it is called, from its label, its JSON schema and its first
#: value: an element with `value`, `set_value()` and `on_value_change()` (as NiceGUI's value
#: elements have), and optionally `invalid()` (its own fields outside their bounds).
EditorFactory = Callable[[str, dict[str, Any], Any], Any]

#: The spec's groups as form sections, in order.
GROUPS = {
    "run": "Run",
    "optimisation": "Optimisation",
    "rewards": "Rewards",
    "preference": "Preference",
    "generation": "Generation",
    "lora": "LoRA adapters",
    "hardware": "Hardware and precision",
    "evaluation": "Evaluation and checkpoints",
}
#: Fields chosen elsewhere on the page (pickers), or fixed.
PICKED = frozenset({"base_model", "dataset_id", "trainer"})
#: Choices with at most this many options are toggles, more are drop-downs.
TOGGLE_OPTIONS = 4
WORDS = {
    "lora": "LoRA",
    "rslora": "rsLoRA",
    "r": "rank",
    "eval": "evaluate",
    "grad": "gradient",
    "unsloth": "Unsloth",
    "gpu": "GPU",
    "kl": "KL",
    "url": "URL",
    "api": "API",
    "json": "JSON",
}
# Names of literal values that read better spelled out.
VALUE_NAMES = {
    "lora": "LoRA",
    "qlora": "QLoRA",
    "full": "Full",
    "wandb": "Weights & Biases",
    "mlflow": "MLflow",
    "ipo": "IPO",
    "simpo": "SimPO",
    "sigmoid": "Sigmoid",
    "last_number": "Last number",
    "tag": "Inside a tag",
    "search": "Anywhere",
    "fullmatch": "Whole answer",
    "words": "Words",
    "chars": "Characters",
    "projector": "Projector",
    "vision_tower": "Vision tower (image encoder; Gemma 4 12B: patch projection)",
}


NOTE = "w-full items-start no-wrap gap-2 q-px-sm q-py-xs rounded-borders text-caption field-note"
NOTE_STYLE = {
    "warning": "bg-amber-1 text-brown-9 field-warning",
    "refusal": "bg-red-1 text-negative field-refusal",
    "failure": "bg-red-1 text-negative field-failure",
}
NOTE_ICON = {"warning": "info", "refusal": "block", "failure": "error"}


@dataclass(frozen=True)
class Note:
    """Something said under a field: a `warning` (legal, likely wrong), a `refusal` (cannot
    work) or a `failure` (a run failed because of it)."""

    message: str
    severity: Literal["warning", "refusal", "failure"] = "warning"


def label(name: str) -> str:
    """A field's name in words: `lora_r` → "LoRA rank", `eval_every` → "Evaluate every"."""
    words = [WORDS.get(word, word) for word in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def trainers() -> dict[str, str]:
    """The trainers a run can use, as the picker offers them: {trainer: title}."""
    return {recipe.trainer: recipe.title for recipe in recipes()}


def problems(error: ValidationError) -> str:
    """What is wrong with the settings, in words: "Batch size: Input should be ≥ 1; ..."."""
    said = []
    for issue in error.errors():
        names = [part for part in issue["loc"] if isinstance(part, str)]
        where = label(names[-1]) if names else ""
        message = str(issue["msg"]).removeprefix("Value error, ")
        if issue.get("input") is None and str(issue["type"]).endswith(("_type", "_parsing")):
            message = "needs a value"
        said.append(f"{where}: {message}" if where else message[:1].upper() + message[1:])
    return "; ".join(said) + "."


def field_problems(error: ValidationError) -> dict[str, str]:
    """What the spec says is wrong with each field it names: {field: "message"} (errors of the
    whole spec are left to `problems`)."""
    said: dict[str, list[str]] = {}
    for issue in error.errors():
        names = [part for part in issue["loc"] if isinstance(part, str)]
        if names:
            message = str(issue["msg"]).removeprefix("Value error, ")
            said.setdefault(names[0], []).append(message[:1].upper() + message[1:])
    return {name: "; ".join(messages) + "." for name, messages in said.items()}


def _choices(schema: dict[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    return None


def _words(schema: dict[str, Any]) -> list[str]:
    """The words a field takes besides a number (`devices`: a number or `auto`)."""
    return [str(o["const"]) for o in schema.get("anyOf", []) if isinstance(o.get("const"), str)]


def _nullable(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema of a value that may also be empty (`X | None`), and whether it may."""
    options = schema.get("anyOf")
    if options is None:
        return schema, False
    kept = [option for option in options if option.get("type") != "null"]
    return {**schema, **kept[0]}, len(kept) < len(options)


class SpecForm:
    """Widgets for `model`'s fields; `section(group)` builds a group's widgets where it is called.

    `values()` reads the fields, `set_values()` fills them in; `changed()` is called on every edit.
    """

    def __init__(
        self,
        changed: Changed,
        model: type[BaseModel],
        editors: Mapping[str, EditorFactory] | None = None,
        skip: frozenset[str] = PICKED,
    ) -> None:
        self.model = model
        self.changed = changed
        self.editors = dict(editors or {})
        self.skip = skip
        self.schema: dict[str, dict[str, Any]] = model.model_json_schema()["properties"]
        # By the name the schema gives a field (its alias, when it has one).
        self.model_fields: dict[str, FieldInfo] = {
            field.alias or name: field for name, field in model.model_fields.items()
        }
        self.widgets: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}
        self.sections: dict[str, ui.element] = {}
        self.notes: dict[str, ui.column] = {}
        self.boxes: dict[str, ui.column] = {}

    def fields(self, group: str) -> list[str]:
        """The group's fields in the spec's order (a field with no group is a `run` one)."""
        return [
            name
            for name, schema in self.schema.items()
            if schema.get("group", "run") == group and name not in self.skip
        ]

    def groups(self) -> list[str]:
        """The groups of the fields shown, in the order of `GROUPS`, then others as they come."""
        found = {str(schema.get("group", "run")) for schema in self.schema.values()}
        return [g for g in GROUPS if g in found] + sorted(found - set(GROUPS))

    def default(self, name: str) -> Any:
        """The field's default; None for a field that must be given."""
        field = self.model_fields[name]
        if field.is_required():
            return None
        return field.get_default(call_default_factory=True)

    def section(self, group: str, *, skip: frozenset[str] = frozenset()) -> ui.grid:
        """The group's fields (except those in `skip`) in a grid, in the spec's order."""
        grid = ui.grid().classes(f"w-full gap-x-6 gap-y-4 grid-cols-1 md:grid-cols-2 group-{group}")
        with grid:
            for name in self.fields(group):
                if name not in skip:
                    self.field(name)
        self.sections[group] = grid
        return grid

    def field(self, name: str) -> Any:
        """The widget of one field, with its help underneath."""
        schema, nullable = _nullable(self.schema[name])
        value = self.default(name)
        help_text = schema.get("description", "")
        with ui.column().classes(f"w-full gap-1 spec-field field-{name}") as box:
            if name in self.editors:
                box.classes("col-span-full")  # an editor takes the whole width of its section
                self.kinds[name] = "editor"
                widget = self.editors[name](label(name), schema, value)
            else:
                widget = self._widget(name, schema, nullable, value)
            self.notes[name] = ui.column().classes("w-full gap-1 field-notes")
            ui.markdown(help_text).classes("field-help text-caption text-grey-7")
        widget.on_value_change(self.changed)
        self.widgets[name] = widget
        self.boxes[name] = box
        return widget

    def mark(self, notes: dict[str, list[Note]]) -> None:
        """Show each field's notes under it (others' are cleared); a field with a refusal or
        a failure is highlighted."""
        for name, column in self.notes.items():
            said = notes.get(name, [])
            column.clear()
            with column:
                for note in said:
                    with ui.row().classes(f"{NOTE} {NOTE_STYLE[note.severity]}"):
                        ui.icon(NOTE_ICON[note.severity]).classes("q-mt-xs")
                        ui.label(note.message)
            flagged = any(note.severity != "warning" for note in said)
            self.boxes[name].classes(
                add="field-flagged" if flagged else "", remove="" if flagged else "field-flagged"
            )

    def invalid(self) -> list[str]:
        """The fields whose value is outside their bounds (their message is shown), and those
        whose editor has such fields inside it."""
        return [
            name
            for name, widget in self.widgets.items()
            if (isinstance(widget, ui.number) and not widget.validate())
            or (hasattr(widget, "invalid") and widget.invalid())
        ]

    def _widget(self, name: str, schema: dict[str, Any], nullable: bool, value: Any) -> ui.element:
        kind = schema.get("type")
        text = label(name)
        choices = _choices(schema)
        if kind == "boolean":
            self.kinds[name] = "bool"
            return ui.switch(text, value=bool(value)).props("dense")
        if choices is not None:
            self.kinds[name] = "choice"
            options = {choice: VALUE_NAMES.get(str(choice), str(choice)) for choice in choices}
            if len(options) <= TOGGLE_OPTIONS:
                with ui.column().classes("gap-1"):
                    ui.label(text).classes("text-caption text-grey-8")
                    return ui.toggle(options, value=value).props(
                        "no-caps unelevated dense rounded toggle-color=primary color=grey-2 "
                        "text-color=grey-9 padding='4px 14px'"
                    )
            return (
                ui.select(options, label=text, value=value)
                .props("outlined dense")
                .classes("w-full")
            )
        if kind == "array":
            items = schema.get("items", {})
            item_choices = _choices(items)
            self.kinds[name] = "list"
            if item_choices is not None:
                options = {c: VALUE_NAMES.get(str(c), str(c)) for c in item_choices}
                return (
                    ui.select(options, label=text, value=list(value), multiple=True)
                    .props("outlined dense use-chips")
                    .classes("w-full")
                )
            chips = ui.input_chips(text, value=list(value), new_value_mode="add-unique")
            chips.props('hint="Type one, then press Enter."')
            return chips.props("outlined dense hide-bottom-space").classes("w-full")
        words = _words(schema)
        if kind == "integer" and words:
            self.kinds[name] = "number_or_word"
            bounds = Bounds.of(schema, integer=True, nullable=nullable)
            field = NumberOrWord(text, value, bounds, words).props("outlined dense")
            return field.classes("w-full")
        if kind in ("integer", "number"):
            self.kinds[name] = "int" if kind == "integer" else "float"
            bounds = Bounds.of(schema, integer=kind == "integer", nullable=nullable)
            # No min/max: ui.number would clamp the typed value on blur. The bounds are a hint,
            # and a value outside them is said in words and kept as typed.
            number = bounded_number(
                text, value, bounds, placeholder="empty: not set" if nullable else None
            ).props("outlined dense")
            number.props(f'hint="{bounds.hint()}"')
            number.classes("w-full")
            if nullable:
                number.props("clearable")
            return number
        if kind == "object":
            self.kinds[name] = "json"
            shown = json.dumps(value, indent=2) if value is not None else ""
            return (
                ui.textarea(text, value=shown, placeholder="{ ... }" if nullable else None)
                .props("outlined dense autogrow debounce=400 input-class=font-mono")
                .classes("w-full")
            )
        self.kinds[name] = "text"
        return (
            ui.input(text, value=value or "", placeholder="automatic" if nullable else None)
            .props(f"outlined dense maxlength={schema.get('maxLength', 1000)} debounce=400")
            .classes("w-full")
        )

    def values(self) -> dict[str, Any]:
        """The fields as filled in (not yet validated)."""
        result: dict[str, Any] = {}
        for name, widget in self.widgets.items():
            value = widget.value
            kind = self.kinds[name]
            if kind == "int" and value is not None:
                value = int(value) if float(value).is_integer() else value
            elif kind in ("text", "json"):
                value = value.strip() if value and value.strip() else None
                if kind == "json" and value is not None:
                    value = _json(value)
            elif kind == "list":
                value = list(value or [])
            elif kind == "number_or_word":
                value = widget.parsed()
            result[name] = value
        return result

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill in the fields named in `values` (others are left as they are)."""
        for name, value in values.items():
            widget = self.widgets.get(name)
            if widget is None:
                continue
            if self.kinds[name] == "text":
                value = value or ""
            elif self.kinds[name] == "json":
                value = json.dumps(value, indent=2) if isinstance(value, dict | list) else ""
            elif self.kinds[name] == "list":
                value = list(value or [])
            elif self.kinds[name] == "number_or_word":
                value = "" if value is None else str(value)
            widget.set_value(value)

    def value(self, name: str) -> Any:
        return self.values().get(name)


def _json(text: str) -> Any:
    """The JSON in `text`; the text itself when it is not JSON (validation then says so)."""
    try:
        return json.loads(text)
    except ValueError:
        return text
