"""Presets: commented YAML starting points, one per trainer, catalog model and method.

`training/presets/<id>.yaml` holds every field of its trainer's spec but the ones that belong to
a single run (`dataset_id`, `name`, `sample_prompts`), each with a comment saying why it has that
value, under a header comment: the title on the first line, then a paragraph on what the preset
is for, and a `Hardware:` paragraph on what it needs. Each recipe says how its preset ids are
formed (SFT's are `<model-id>_<method>`). A trainer has a preset for every catalog model and
method unless `presets/coverage.yaml` names the models and methods it has them for (the
preference trainers, for the models they are usually run on). A test loads and validates every
preset and checks that each expected one is there.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, Field

from tuneforge.errors import NotFound
from tuneforge.models.catalog import catalog
from tuneforge.training.recipe import Recipe
from tuneforge.training.registry import recipes
from tuneforge.training.spec import METHODS, Method

#: Fields a preset leaves to the run.
#: Settings of one run, not of a model's preset: its data and name, and where it runs.
RUN_FIELDS = frozenset(
    {"dataset_id", "name", "sample_prompts", "check_examples", "start_from", "devices", "gpu_type"}
)
COVERAGE = "coverage.yaml"
VALIDATION_DATASET = "preset-check"


class UnknownPreset(NotFound):
    """No preset has this id."""


class PresetInfo(BaseModel):
    """A preset, as the picker lists it."""

    id: str = Field(description="The preset's id, such as `<model-id>_<method>` for SFT.")
    trainer: str = Field(description="The trainer whose spec it fills in.")
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


def expected_ids() -> list[str]:
    """The ids of the presets there must be: per catalog model (in catalog order), per trainer
    (as registered), per method, those `presets/coverage.yaml` names for its trainer, or every
    one for a trainer it does not name."""
    coverage = yaml.safe_load(_directory().joinpath(COVERAGE).read_text(encoding="utf-8")) or {}
    return [
        recipe.preset_id(entry.id, method)
        for entry in catalog().models
        for recipe in recipes()
        for method in METHODS
        if recipe.trainer not in coverage or method in coverage[recipe.trainer].get(entry.id, [])
    ]


def _owner(preset_id: str) -> tuple[Recipe[Any], str, Method]:
    """The recipe a preset id belongs to, and the id's model and method."""
    for recipe in recipes():
        parts = recipe.preset_parts(preset_id)
        if parts is not None:
            return recipe, parts[0], parts[1]  # type: ignore[return-value]
    raise UnknownPreset(f"There is no preset called {preset_id!r}.")


def _text(preset_id: str) -> str:
    _owner(preset_id)  # only ids of a recipe's form name a file
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
    recipe, model, method = _owner(preset_id)
    hardware = next((p for p in paragraphs if p.startswith("Hardware:")), "")
    described = [p for p in paragraphs[1:] if p is not hardware]
    return PresetInfo(
        id=preset_id,
        trainer=recipe.trainer,
        model=model,
        method=method,
        title=paragraphs[0] if paragraphs else preset_id,
        description=described[0] if described else "",
        hardware=hardware.removeprefix("Hardware:").strip(),
    )


def list_presets() -> list[PresetInfo]:
    """Every preset, in catalog order, then trainer (as registered), then lora, qlora, full."""
    trainers = [recipe.trainer for recipe in recipes()]
    order = {entry.id: i for i, entry in enumerate(catalog().models)}
    found = []
    for entry in _directory().iterdir():
        preset_id = entry.name.removesuffix(".yaml")
        if entry.name.endswith(".yaml"):
            try:
                found.append(_info(preset_id, _text(preset_id)))
            except UnknownPreset:
                continue

    def rank(info: PresetInfo) -> tuple[int, str, int, int]:
        return (
            order.get(info.model, len(order)),
            info.model,
            trainers.index(info.trainer),
            METHODS.index(info.method),
        )

    return sorted(found, key=rank)


def load_preset(preset_id: str) -> dict[str, Any]:
    """A preset's spec values (everything but the dataset), validated by its trainer's spec."""
    recipe, _, _ = _owner(preset_id)
    values = yaml.safe_load(_text(preset_id))
    if not isinstance(values, dict):
        raise ValueError(f"Preset {preset_id!r} is not a mapping of settings.")
    recipe.spec(**values, dataset_id=VALIDATION_DATASET)
    return values
