"""The mapping form: how a raw dataset's rows become conversations, built from `MappingSpec`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui

from tuneforge.data.mapping import (
    FIELDS_NEEDED,
    SOURCE_FIELDS,
    TURNS_NEEDED,
    FieldSource,
    MappingSpec,
)
from tuneforge.ui.dataset_fields import blank, checkbox, description, label, select, text

Changed = Callable[[], Awaitable[None]]

# The roles each mode takes in the `fields` layout (with an optional system field but for plain
# text), and besides the turns column in the messages/sharegpt layouts (feedback's completion is
# then optional: the conversation's last turn).
ROLES_BY_MODE: dict[str, tuple[str, ...]] = {
    mode: roles if mode == "language_modeling" else ("system", *roles)
    for mode, roles in FIELDS_NEEDED.items()
}
TURN_ROLES: dict[str, tuple[str, ...]] = TURNS_NEEDED | {"feedback": ("completion", "label")}
IMPLICIT_HIDES = frozenset({"system", "user"})  # the prompt comes from chosen and rejected
OPTIONAL_ROLES = frozenset({"system", "completion"})
TURN_LAYOUTS = frozenset({"messages", "sharegpt"})
TOOLS_MODES = frozenset({"conversation", "prompt_only"})  # the modes that take a tools column
SOURCES = {"column": "Column", "template": "Template"}
NO_SOURCE = {"": "None"}


class SourceInput(ui.column):
    """Where one role's text comes from: a column, or a template over columns."""

    def __init__(self, role: str, columns: list[str], source: dict[str, Any] | None) -> None:
        super().__init__()
        self.role = role
        source = source or {}
        how = "template" if source.get("template") else "column" if source else ""
        self.classes(f"w-full gap-1 mapping-role mapping-role-{role}")
        with self:
            with ui.row().classes("w-full items-center justify-between"):
                ui.label(label(role)).classes("text-subtitle2")
                options = (NO_SOURCE if role in OPTIONAL_ROLES else {}) | SOURCES
                self.how = ui.toggle(options, value=how or next(iter(options)))
                self.how.props("dense no-caps unelevated toggle-color=primary size=sm")
            ui.markdown(description(MappingSpec, role)).classes("field-help text-grey-7 -mt-2")
            self.column = select(FieldSource, "column", source.get("column"), columns)
            self.template = text(FieldSource, "template", source.get("template"))
        self.column.bind_visibility_from(self.how, "value", value="column")
        self.template.bind_visibility_from(self.how, "value", value="template")

    def source(self) -> dict[str, Any] | None:
        if self.how.value == "column":
            return {"column": self.column.value}
        if self.how.value == "template":
            return {"template": self.template.value}
        return None


class MappingForm(ui.column):
    """The mapping's fields, pre-filled with `mapping`; `on_change` runs after every change."""

    def __init__(
        self, columns: list[str], mapping: dict[str, Any] | None, on_change: Changed
    ) -> None:
        super().__init__()
        initial = mapping or {}
        self.on_change = on_change
        self.classes("w-full gap-4 mapping-form")
        with self:
            self.mode = select(MappingSpec, "mode", initial.get("mode", "conversation"))
            self.layout = select(MappingSpec, "layout", initial.get("layout", "fields"))
            self.messages_column = select(
                MappingSpec, "messages_column", initial.get("messages_column"), columns
            )
            with ui.column().classes("gap-0 mapping-implicit-prompt") as self.implicit_box:
                self.implicit_prompt = checkbox(
                    MappingSpec, "implicit_prompt", bool(initial.get("implicit_prompt"))
                )
            self.sources = {
                role: SourceInput(role, columns, initial.get(role)) for role in SOURCE_FIELDS
            }
            self.system_prompt = text(MappingSpec, "system_prompt", initial.get("system_prompt"))
            self.system_prompt.props("type=textarea autogrow")
            self.image_column = select(
                MappingSpec, "image_column", initial.get("image_column"), columns, optional=True
            )
            self.tools_column = select(
                MappingSpec, "tools_column", initial.get("tools_column"), columns, optional=True
            )
        for widget in (
            self.mode,
            self.layout,
            self.implicit_prompt,
            self.messages_column,
            self.system_prompt,
            self.image_column,
            self.tools_column,
            *(part for s in self.sources.values() for part in (s.how, s.column, s.template)),
        ):
            widget.on_value_change(self._changed)
        self._arrange()

    def _implicit(self) -> bool:
        """Whether chosen and rejected hold whole conversations (and make the prompt)."""
        return (self.mode.value, self.layout.value) == ("preference", "fields") and bool(
            self.implicit_prompt.value
        )

    def _roles(self) -> tuple[str, ...]:
        """The roles the chosen mode and layout read from columns or templates."""
        mode, layout = self.mode.value, self.layout.value
        if layout in TURN_LAYOUTS:
            return TURN_ROLES.get(mode, ())
        if layout != "fields":
            return ()
        roles = ROLES_BY_MODE[mode]
        return tuple(r for r in roles if r not in IMPLICIT_HIDES) if self._implicit() else roles

    def _arrange(self) -> None:
        """Show only the fields that the chosen mode and layout use."""
        mode, layout = self.mode.value, self.layout.value
        self.messages_column.set_visibility(layout in TURN_LAYOUTS)
        self.implicit_box.set_visibility((mode, layout) == ("preference", "fields"))
        roles = self._roles()
        for role, source in self.sources.items():
            source.set_visibility(role in roles)
        for widget in (self.system_prompt, self.image_column):
            widget.set_visibility(mode != "language_modeling")
        self.tools_column.set_visibility(mode in TOOLS_MODES)

    async def _changed(self) -> None:
        self._arrange()
        await self.on_change()

    def spec(self) -> MappingSpec:
        """The mapping as filled in; raises pydantic's ValidationError when incomplete."""
        mode, layout = self.mode.value, self.layout.value
        values: dict[str, Any] = {"mode": mode, "layout": layout}
        if layout in TURN_LAYOUTS:
            values["messages_column"] = self.messages_column.value
        for role in self._roles():
            values[role] = self.sources[role].source()
        if self._implicit():
            values["implicit_prompt"] = True
        if mode != "language_modeling":
            values["system_prompt"] = blank(self.system_prompt.value)
            values["image_column"] = self.image_column.value
        if mode in TOOLS_MODES:
            values["tools_column"] = self.tools_column.value
        return MappingSpec.model_validate(values)
