"""Model pickers that show what can run here: each model's label says whether it is available,
downloadable (and how big) or unavailable, and unavailable ones are offered disabled, so they
cannot be picked. The Train page and the Playground use them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tuneforge.data.limits import size_text
from tuneforge.models.availability import Availability
from tuneforge.ui.picker import Picker


def state_label(name: str, availability: Availability) -> str:
    """A model's name as a picker offers it: "Gemma 3 1B · unavailable here"."""
    if availability.state == "unavailable":
        return f"{name} · unavailable here"
    if availability.state == "downloadable":
        size = availability.download_bytes
        return f"{name} · download{f' {size_text(size)}' if size else ''}"
    return name


def summary(states: Iterable[Availability]) -> str:
    """One line on how many of the models can run here, and why the others cannot."""
    states = list(states)
    blocked = [s for s in states if s.state == "unavailable"]
    if not blocked:
        return ""
    reasons = sorted({s.reason for s in blocked})
    why = reasons[0] if len(reasons) == 1 else "see each model"
    return (
        f"{len(states) - len(blocked)} of {len(states)} models can run on this server; the others "
        f"are unavailable: {why[:1].lower()}{why[1:]}"
    )


class ModelSelect(Picker):
    """A picker of models; those in `disabled` are shown but cannot be chosen."""

    def __init__(self, options: dict[str, str], **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.classes("model-select")
