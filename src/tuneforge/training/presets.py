"""Presets: commented YAML starting points, one per catalog model and method.

`training/presets/<model-id>_<method>.yaml` holds every TrainingSpec field but the ones that
belong to a single run (`dataset_id`, `name`, `sample_prompts`), each with a comment saying why
it has that value, under a header comment: the title on the first line, then a paragraph on
what the preset is for, and a `Hardware:` paragraph on what it needs. A test loads and validates
every preset and checks that each catalog model has one per method.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, Field

from tuneforge.models.catalog import catalog
from tuneforge.training.spec import Method, SFTSpec

METHODS: tuple[Method, ...] = ("lora", "qlora", "full")
#: Fields a preset leaves to the run.
RUN_FIELDS = frozenset({"dataset_id", "name", "sample_prompts"})
PRESET_ID = re.compile(r"[a-z0-9][a-z0-9.\-]*_(lora|qlora|full)")
VALIDATION_DATASET = "preset-check"


class UnknownPreset(LookupError):
    """No preset has this id."""


class PresetInfo(BaseModel):
    """A preset, as the picker lists it."""

    id: str = Field(description="The preset's id: `<model-id>_<method>`.")
    model: str = Field(description="The catalog id of its model.")
    method: Method = Field(description="Its training method.")
    title: str = Field(description="A one-line title.")
    description: str = Field(description="What it is for.")
    hardware: str = Field(description="What it needs to run.")

    @property
    def name(self) -> str:
        return self.title


def _directory() -> Any:
    return files("tuneforge.training").joinpath("presets")


def _text(preset_id: str) -> str:
    if not PRESET_ID.fullmatch(preset_id):
        raise UnknownPreset(f"There is no preset called {preset_id!r}.")
    resource = _directory().joinpath(f"{preset_id}.yaml")
    if not resource.is_file():
        raise UnknownPreset(f"There is no preset called {preset_id!r}.")
    return str(resource.read_text(encoding="utf-8"))


def header(text: str) -> list[str]:
    """The paragraphs of the comment block a preset starts with."""
    paragraphs: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        content = line[1:].strip()
        if content:
            paragraphs[-1].append(content)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [" ".join(lines) for lines in paragraphs if lines]


def _info(preset_id: str, text: str) -> PresetInfo:
    paragraphs = header(text)
    model, _, method = preset_id.rpartition("_")
    hardware = next((p for p in paragraphs if p.startswith("Hardware:")), "")
    described = [p for p in paragraphs[1:] if p is not hardware]
    return PresetInfo(
        id=preset_id,
        model=model,
        method=method,  # type: ignore[arg-type]
        title=paragraphs[0] if paragraphs else preset_id,
        description=described[0] if described else "",
        hardware=hardware.removeprefix("Hardware:").strip(),
    )


def list_presets() -> list[PresetInfo]:
    """Every preset, in catalog order and then lora, qlora, full."""
    ids = [
        entry.name.removesuffix(".yaml")
        for entry in _directory().iterdir()
        if entry.name.endswith(".yaml") and PRESET_ID.fullmatch(entry.name.removesuffix(".yaml"))
    ]
    order = {entry.id: i for i, entry in enumerate(catalog().models)}

    def rank(preset_id: str) -> tuple[int, str, int]:
        model, _, method = preset_id.rpartition("_")
        return order.get(model, len(order)), model, METHODS.index(method)  # type: ignore[arg-type]

    return [_info(preset_id, _text(preset_id)) for preset_id in sorted(ids, key=rank)]


def load_preset(preset_id: str) -> dict[str, Any]:
    """A preset's TrainingSpec values (everything but the dataset), validated."""
    values = yaml.safe_load(_text(preset_id))
    if not isinstance(values, dict):
        raise ValueError(f"Preset {preset_id!r} is not a mapping of settings.")
    SFTSpec(**values, dataset_id=VALIDATION_DATASET)
    return values
