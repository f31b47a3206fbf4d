"""Number fields that say their bounds and refuse a value outside them in words, keeping it as
typed: `ui.number` with `min`/`max` clamps a value silently when the field loses focus (1000
becomes 1), so these fields pass no `min`/`max` and check with `Bounds` instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nicegui import ui
from nicegui.events import GenericEventArguments
from pydantic import BaseModel


def _number(value: float, integer: bool) -> str:
    return f"{int(value):,}" if integer else f"{value:g}"


@dataclass(frozen=True)
class Bounds:
    """A numeric field's limits from its JSON schema, said as a hint and checked in words."""

    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    integer: bool
    nullable: bool

    @classmethod
    def for_field(cls, model: type[BaseModel], name: str, *, integer: bool) -> Bounds:
        """The bounds of `model`'s field `name` (from its JSON schema)."""
        schema = model.model_json_schema()["properties"][name]
        options = schema.get("anyOf")
        nullable = options is not None and any(o.get("type") == "null" for o in options)
        if options is not None:
            schema = {**schema, **next(o for o in options if o.get("type") != "null")}
        return cls.of(schema, integer=integer, nullable=nullable)

    @classmethod
    def of(cls, schema: dict[str, Any], *, integer: bool, nullable: bool) -> Bounds:
        return cls(
            low=schema.get("minimum", schema.get("exclusiveMinimum")),
            high=schema.get("maximum", schema.get("exclusiveMaximum")),
            low_open="exclusiveMinimum" in schema,
            high_open="exclusiveMaximum" in schema,
            integer=integer,
            nullable=nullable,
        )

    def hint(self) -> str:
        """The range in words: "1 to 1,024", "more than 0, at most 1"."""
        low = None if self.low is None else _number(self.low, self.integer)
        high = None if self.high is None else _number(self.high, self.integer)
        if low is not None and high is not None and not (self.low_open or self.high_open):
            text = f"{low} to {high}"
        else:
            parts = []
            if low is not None:
                parts.append(f"more than {low}" if self.low_open else f"at least {low}")
            if high is not None:
                parts.append(f"less than {high}" if self.high_open else f"at most {high}")
            text = ", ".join(parts)
        if self.integer:
            text = f"a whole number, {text}" if text else "any whole number"
        text = text or "any number"
        return f"Empty, or {text}" if self.nullable else text[:1].upper() + text[1:]

    def problem(self, value: float | None) -> str | None:
        """What is wrong with `value` (None: nothing)."""
        if value is None:
            return (
                None
                if self.nullable
                else f"Needs a value: {self.hint()[:1].lower()}{self.hint()[1:]}."
            )
        outside = (
            (self.low is not None and (value <= self.low if self.low_open else value < self.low))
            or (
                self.high is not None
                and (value >= self.high if self.high_open else value > self.high)
            )
            or (self.integer and not float(value).is_integer())
        )
        if not outside:
            return None
        return (
            f"{_number(value, False)} is out of range: {self.hint()[:1].lower()}{self.hint()[1:]}."
        )


class TypedNumber(ui.number):
    """A number field that keeps what was typed: nothing is clamped, rounded or reformatted when
    it loses focus or when the field is redrawn (to show a message), and a value set from the
    server shows as its shortest text ("1000", not "1000.0")."""

    typed: str | None = None  # the text the browser sent last

    def sanitize(self) -> None:
        """Leave the value as typed (`ui.number` clamps and reformats it here on blur)."""

    def _event_args_to_value(self, e: GenericEventArguments) -> float | None:
        self.typed = None if e.args in (None, "") else str(e.args)
        return super()._event_args_to_value(e)

    def _value_to_model_value(self, value: Any) -> Any:
        if value is None or self.format is not None:
            return super()._value_to_model_value(value)
        number = float(value)
        if self.typed is not None:
            try:
                if float(self.typed) == number:
                    return self.typed
            except ValueError:
                pass
        return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def bounded_number(text: str, value: float | None, bounds: Bounds, **kwargs: Any) -> TypedNumber:
    """A number field for `bounds`: a message under it when the value is outside them."""
    number = TypedNumber(
        text,
        value=value,
        step=1 if bounds.integer else None,
        validation=bounds.problem,
        **kwargs,
    )
    if not bounds.integer:
        number.props("step=any")
    return number


class NumberOrWord(ui.input):
    """A field that takes a whole number within `bounds` or one of a few `words` (devices: `2`,
    or `auto`); `parsed()` is the number as an `int`, a word as typed. Anything else is said in
    words under it and kept as typed."""

    def __init__(self, text: str, value: int | str | None, bounds: Bounds, words: list[str]):
        self.bounds = bounds
        self.words = words
        super().__init__(
            text,
            value="" if value is None else str(value),
            autocomplete=words,
            validation=self.problem,
        )
        self.props(f'hint="{self.hint()}"')

    def hint(self) -> str:
        """`Bounds.hint()` with the words: "A whole number, 1 to 64, or auto"."""
        said = " or ".join(self.words)
        return f"{self.bounds.hint()}, or {said}"

    def parsed(self) -> int | str | None:
        """The value for the spec: a number, a word, or what was typed (None: nothing)."""
        return _number_or_word(self.value)

    def problem(self, text: str | None) -> str | None:
        """What is wrong with `text` (None: nothing)."""
        value = _number_or_word(text)
        if value is None:
            return f"Needs a value: {self.hint()[:1].lower()}{self.hint()[1:]}."
        if isinstance(value, int):
            return self.bounds.problem(value)
        if value in self.words:
            return None
        return f"{value} is neither a whole number nor {' or '.join(self.words)}."

    def invalid(self) -> bool:
        return not self.validate()


def _number_or_word(text: str | None) -> int | str | None:
    """`text` as a whole number when it is one, else as typed (stripped; None when empty)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text
