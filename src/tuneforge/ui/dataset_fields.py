"""Form fields made from a pydantic model's fields: their label, help text, choices and bounds.

The help under each field is the field's `description`, so the form says what the API docs say.
"""

from __future__ import annotations

from typing import Any, get_args

from nicegui import ui
from pydantic import BaseModel, ValidationError

from tuneforge.ui.number_field import Bounds, bounded_number


def label(name: str) -> str:
    """A field's name as a label: `system_prompt` → "System prompt"."""
    return name.replace("_", " ").capitalize()


def description(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].description or ""


def choices(model: type[BaseModel], name: str) -> list[str]:
    """The values a `Literal[...]` field allows."""
    return [str(value) for value in get_args(model.model_fields[name].annotation)]


def default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].get_default(call_default_factory=True)


def _with_help(
    widget: ui.element, model: type[BaseModel], name: str, bounds: str | None = None
) -> None:
    """The field's description (after its `bounds`, if any) under it (the hint area grows
    with the text)."""
    widget.props("outlined dense bottom-slots hide-bottom-space").classes("w-full")
    text = description(model, name)
    with widget.add_slot("hint"):
        ui.markdown(f"{bounds}. {text}" if bounds else text).classes("field-help text-grey-7")


def select(
    model: type[BaseModel],
    name: str,
    value: Any,
    options: list[str] | None = None,
    *,
    optional: bool = False,
) -> ui.select:
    """A choice among `options` (default: the field's literal values); `optional` may be left
    empty."""
    widget = ui.select(
        options if options is not None else choices(model, name),
        label=label(name),
        value=value,
        clearable=optional,
    ).props("options-dense")
    _with_help(widget, model, name)
    return widget


def text(model: type[BaseModel], name: str, value: str | None) -> ui.input:
    """A text field; typing is debounced so that a live preview does not run on every key."""
    widget = ui.input(label(name), value=value or "").props("debounce=400")
    _with_help(widget, model, name)
    return widget


def number(
    model: type[BaseModel], name: str, value: float | None, *, integer: bool = True
) -> ui.number:
    """A number field that says the field's bounds and, for a value outside them, a message
    (the value is kept as typed, not clamped)."""
    bounds = Bounds.for_field(model, name, integer=integer)
    widget = bounded_number(label(name), value, bounds)
    _with_help(widget, model, name, bounds.hint())
    return widget


def checkbox(model: type[BaseModel], name: str, value: bool) -> ui.checkbox:
    with ui.column().classes("gap-0"):
        widget = ui.checkbox(label(name), value=value).props("dense")
        ui.markdown(description(model, name)).classes("field-help text-grey-7 q-pl-lg")
    return widget


def blank(value: str | None) -> str | None:
    """An empty or whitespace-only field value as None."""
    return value if value and value.strip() else None


def problems(error: ValidationError) -> str:
    """What is wrong with a form, in words: "Max length: Input should be ≥ 16; ..."."""
    said = []
    for issue in error.errors():
        names = [part for part in issue["loc"] if isinstance(part, str)]
        where = label(names[-1]) if names else ""
        message = str(issue["msg"]).removeprefix("Value error, ")
        said.append(f"{where}: {message}" if where else message[:1].upper() + message[1:])
    return "; ".join(said) + "."
