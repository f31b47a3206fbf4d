"""A drop-down whose options can carry a caption (a second, smaller line that says what the
option is) and can be offered disabled (shown, with their caption saying why, but not chosen).
The model, dataset and trainer pickers are made of it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from nicegui import ui

#: An option as Quasar draws it, with its caption under the label.
OPTION = r"""
<q-item v-bind="props.itemProps">
  <q-item-section>
    <q-item-label>{{ props.opt.label }}</q-item-label>
    <q-item-label v-if="props.opt.caption" caption>{{ props.opt.caption }}</q-item-label>
  </q-item-section>
</q-item>"""


class Picker(ui.select):
    """A `ui.select` whose options in `disabled` cannot be chosen, and whose options named in
    `captions` show that caption under their label."""

    def __init__(
        self,
        options: dict[Any, str],
        *,
        disabled: Collection[Any] = (),
        captions: Mapping[Any, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.disabled = frozenset(disabled)
        self.captions = dict(captions or {})
        super().__init__(options, **kwargs)
        if self.captions:
            self.add_slot("option", OPTION)

    def offer(
        self,
        options: dict[Any, str],
        *,
        disabled: Collection[Any] = (),
        captions: Mapping[Any, str] | None = None,
    ) -> None:
        """Offer other options (the value is kept when it is still offered and allowed)."""
        self.disabled = frozenset(disabled)
        self.captions = dict(captions or {})
        if self.captions and "option" not in self.slots:
            self.add_slot("option", OPTION)
        self.set_options(options)

    def _update_options(self) -> None:
        super()._update_options()
        for option, value in zip(self._props["options"], self._values, strict=True):
            if value in self.disabled:
                option["disable"] = True
            if value in self.captions:
                option["caption"] = self.captions[value]
