"""Presets: one per trainer, catalog model and method, each valid, complete and commented."""

from __future__ import annotations

from importlib.resources import files

import pytest
import yaml

from tuneforge.models.catalog import catalog
from tuneforge.training.presets import (
    METHODS,
    RUN_FIELDS,
    UnknownPreset,
    expected_ids,
    header,
    list_presets,
    load_preset,
)
from tuneforge.training.registry import recipe, recipes

DIRECTORY = files("tuneforge.training").joinpath("presets")
EXPECTED = expected_ids()


def text(preset_id: str) -> str:
    return DIRECTORY.joinpath(f"{preset_id}.yaml").read_text(encoding="utf-8")


def test_sft_presets_every_model_and_method_and_each_preference_trainer_some() -> None:
    sft = [
        recipe("sft").preset_id(entry.id, method)
        for entry in catalog().models
        for method in METHODS
    ]
    assert set(sft) <= set(EXPECTED)
    for trainer in ("dpo", "orpo", "kto"):
        own = [p for p in list_presets() if p.trainer == trainer]
        assert {p.method for p in own} == {"lora", "full"}, trainer
        for preset in own:
            values = load_preset(preset.id)
            # Gentler than SFT's step size, for the same model and method.
            assert (
                values["learning_rate"]
                < load_preset(f"{preset.model}_{preset.method}")["learning_rate"]
            )


def test_every_catalog_model_has_a_preset_per_method() -> None:
    listed = [preset.id for preset in list_presets()]
    missing = sorted(set(EXPECTED) - set(listed))
    assert not missing, f"no preset for {missing}"
    assert listed == EXPECTED, "presets of models not in the catalog, or out of order"


@pytest.mark.parametrize("preset_id", EXPECTED)
def test_a_preset_validates_and_holds_every_setting_but_the_run_ones(preset_id: str) -> None:
    values = load_preset(preset_id)
    info = next(p for p in list_presets() if p.id == preset_id)
    assert values["base_model"] == info.model
    assert values["method"] == info.method
    assert values["trainer"] == info.trainer
    spec_type = next(r.spec for r in recipes() if r.trainer == info.trainer)
    spec = spec_type(**values, dataset_id="d")
    assert set(values) == set(spec_type.model_fields) - RUN_FIELDS
    # Test models learn a small dataset from more, smaller steps (the tiny vision model needs
    # 4 x 1 to learn its colours in three epochs); real models' presets average over 8 or more.
    entry = catalog().get(info.model)
    assert spec.effective_batch >= (4 if entry is not None and entry.test_only else 8)


@pytest.mark.parametrize("preset_id", EXPECTED)
def test_a_preset_has_a_header_and_a_comment_on_every_setting(preset_id: str) -> None:
    source = text(preset_id)
    paragraphs = header(source)
    assert len(paragraphs) >= 3, "title, what it is for, and the hardware it needs"
    info = next(p for p in list_presets() if p.id == preset_id)
    assert info.title and info.description and info.hardware
    assert preset_id.startswith(f"{info.model}_")
    assert "GB" in info.hardware, "the header says how much memory it needs"
    lines = source.splitlines()
    keys = 0
    for number, line in enumerate(lines):
        if not line or line.startswith((" ", "#", "-")):
            continue
        keys += 1
        key = line.split(":", 1)[0]
        above = lines[number - 1] if number else ""
        assert above.startswith("# ") or " # " in line, f"{preset_id}: `{key}` has no comment"
    assert keys == len(yaml.safe_load(source))


def test_vision_presets_say_the_images_are_not_trained() -> None:
    for info in list_presets():
        entry = catalog().get(info.model)
        assert entry is not None
        if entry.modality == "vision":
            assert "text only" in info.description, info.id


def test_qlora_presets_say_they_need_cuda() -> None:
    for info in list_presets():
        if info.method == "qlora":
            assert "CUDA" in info.description + info.hardware, info.id


@pytest.mark.parametrize("preset_id", ["nope_lora", "../catalog_lora", "gemma-3-270m_dpo", ""])
def test_an_unknown_preset_is_refused(preset_id: str) -> None:
    with pytest.raises(UnknownPreset):
        load_preset(preset_id)
