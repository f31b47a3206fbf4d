"""The catalog: every entry valid and plausible, and admins' extra files merged safely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneforge.models.catalog import Architecture, CatalogEntry, CatalogError, catalog, load_catalog
from tuneforge.settings import Settings
from tuneforge.training.spec import SFTSpec

ENTRIES = catalog().models
HUB_ENTRIES = [e for e in ENTRIES if e.source == "hub"]


def decoder_parameters(arch: Architecture) -> int:
    """A Gemma 3 text decoder's weights: the (tied) embedding, then per layer the attention
    projections, the gated MLP and six norms (four around the sublayers, query and key), then
    the final norm."""
    attention = arch.hidden_size * arch.head_dim * (2 * arch.attention_heads + 2 * arch.kv_heads)
    mlp = 3 * arch.hidden_size * arch.intermediate_size
    norms = 4 * arch.hidden_size + 2 * arch.head_dim
    return (
        arch.vocab_size * arch.hidden_size
        + arch.layers * (attention + mlp + norms)
        + arch.hidden_size
    )


def test_the_catalog_validates_and_lists_the_gemma_family() -> None:
    ids = [e.id for e in ENTRIES]
    assert len(ids) == len(set(ids))
    for size in ("270m", "1b", "4b", "12b", "27b"):
        assert {f"gemma-3-{size}", f"gemma-3-{size}-it"} <= set(ids)
    for size in ("e2b", "e4b"):
        assert {f"gemma-3n-{size}", f"gemma-3n-{size}-it"} <= set(ids)
    for size in ("e2b", "e4b", "12b", "26b-a4b", "31b"):
        assert {f"gemma-4-{size}", f"gemma-4-{size}-it"} <= set(ids)
    tiny = [
        "tiny-random-gemma3",
        "tiny-random-gemma3-vision",
        "tiny-random-gemma4",
        "tiny-random-gemma4-unified",
        "tiny-random-gemma4-moe",
    ]
    assert [e.id for e in ENTRIES if e.offline] == ["gemma-3-270m", *tiny]
    assert [e.id for e in ENTRIES if e.test_only] == tiny


@pytest.mark.parametrize("entry", HUB_ENTRIES, ids=lambda e: e.id)
def test_hub_ids_are_googles(entry: CatalogEntry) -> None:
    assert entry.hub_id is not None
    expected = {f"google/{entry.id}"} | (
        {f"google/{entry.id}-pt"} if entry.variant == "pt" else set()
    )
    assert entry.hub_id.lower() in expected, entry.hub_id
    assert entry.hub_id.endswith("-it") == (entry.variant == "it")
    # Gemma 4 comes under Apache 2.0; the earlier Gemmas under Google's own terms.
    assert entry.license == ("Apache-2.0" if entry.family == "gemma-4" else "Gemma Terms of Use")


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.family != "gemma-4"], ids=lambda e: e.id)
def test_parameters_agree_with_the_architecture(entry: CatalogEntry) -> None:
    """Gemma 3 and 3n; Gemma 4's counts are rebuilt from its configs in test_gemma4.py."""
    decoder = decoder_parameters(entry.architecture)
    ratio = entry.parameters / decoder
    if entry.modality == "text":  # the whole model is the decoder
        assert entry.parameters == decoder
    elif entry.family == "gemma-3":  # plus the 0.42B SigLIP image encoder
        assert 1.0 < ratio < 1.15
    else:  # Gemma 3n: plus per-layer embeddings (2.0-2.3B), audio and image encoders
        assert entry.family == "gemma-3n"
        assert 1.5 < ratio < 2.5


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_architectures_and_contexts_are_consistent(entry: CatalogEntry) -> None:
    arch = entry.architecture
    assert arch.attention_heads % arch.kv_heads == 0
    assert arch.vocab_size >= 262_144  # Gemma 3's tokenizer
    if entry.test_only:
        assert entry.context_length == 32_768
        assert entry.modality == ("vision" if entry.vision else "text")
    elif entry.family == "gemma-4":  # all read images; the on-device sizes have 128K tokens
        assert entry.context_length == (131_072 if entry.id.startswith("gemma-4-e") else 262_144)
        assert entry.modality == "vision"
    else:
        big = entry.family == "gemma-3" and entry.parameters > 2e9
        assert entry.context_length == (131_072 if big else 32_768)
        assert entry.modality == ("text" if entry.family == "gemma-3" and not big else "vision")
    assert entry.description and len(entry.description) < 300


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.vision], ids=lambda e: e.id)
def test_a_vision_block_is_an_encoder_smaller_than_its_model(entry: CatalogEntry) -> None:
    vision = entry.vision
    assert vision is not None and entry.modality == "vision"
    side = vision.image_size // (vision.patch_size * vision.pooling)  # tokens along a side
    assert vision.image_size == side * vision.patch_size * vision.pooling
    if vision.variable_resolution:  # a square image; other shapes take up to the budget
        assert side**2 <= vision.tokens_per_image
    else:
        assert side**2 == vision.tokens_per_image
    if vision.layers:  # an encoder, not just a projection of the patches
        assert vision.hidden_size % vision.attention_heads == 0
        assert vision.intermediate_size > vision.hidden_size
    assert 0 < vision.parameters < entry.parameters / 2


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_defaults_are_valid_training_settings(entry: CatalogEntry) -> None:
    assert set(entry.defaults) <= set(SFTSpec.model_fields)
    spec = SFTSpec(base_model=entry.id, dataset_id="d", **entry.defaults)
    assert spec.max_length <= entry.context_length
    assert spec.lora_alpha == 2 * spec.lora_r


def test_the_catalog_module_does_not_import_torch() -> None:
    code = (
        "import sys, tuneforge.models.catalog as c; c.catalog(); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- an admin's extra catalog ---------------------------------------------------------------------


def extra_entry(model_id: str, **fields: Any) -> dict[str, Any]:
    base = catalog().get("gemma-3-1b-it")
    assert base is not None
    entry = base.model_dump(exclude={"hub_id", "path", "offline", "source"})
    return entry | {"id": model_id, "name": model_id.title()} | fields


def write(path: Path, models: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"models": models}), encoding="utf-8")
    return path


def test_an_extra_file_adds_local_and_hub_models_after_the_built_in_ones(tmp_path: Path) -> None:
    file = write(
        tmp_path / "extra.yaml",
        [
            extra_entry("support-bot", source="local", path="models/support-bot"),
            extra_entry("elsewhere", source="local", path="/srv/models/elsewhere"),
            extra_entry("medgemma", source="hub", hub_id="google/medgemma-4b-it"),
        ],
    )
    merged = load_catalog(file)
    assert merged.models[: len(ENTRIES)] == ENTRIES
    assert [e.id for e in merged.models[len(ENTRIES) :]] == ["support-bot", "elsewhere", "medgemma"]
    bot = merged.get("support-bot")
    assert bot is not None and bot.offline and bot.path == str(tmp_path / "models/support-bot")
    assert merged.get("elsewhere").path == "/srv/models/elsewhere"  # type: ignore[union-attr]
    medgemma = merged.get("medgemma")
    assert medgemma is not None and not medgemma.offline
    assert load_catalog(None) is catalog()
    assert load_catalog(file) is merged  # read once while unchanged


def test_an_edited_extra_file_is_read_again(tmp_path: Path) -> None:
    file = write(tmp_path / "extra.yaml", [extra_entry("one", source="hub", hub_id="me/one")])
    assert load_catalog(file).get("one") is not None
    write(file, [extra_entry("two", source="hub", hub_id="me/two")])
    os.utime(file, ns=(0, 1))  # a distinct modification time, however fast the file system
    merged = load_catalog(file)
    assert merged.get("one") is None and merged.get("two") is not None


def test_the_setting_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = write(tmp_path / "extra.yaml", [extra_entry("mine", source="hub", hub_id="me/mine")])
    monkeypatch.setenv("TUNEFORGE_CATALOG_FILE", str(file))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.catalog_file == file
    assert load_catalog(settings.catalog_file).get("mine") is not None
    assert Settings(_env_file=None, catalog_file=None).catalog_file is None  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (
            [extra_entry("gemma-3-1b", source="hub", hub_id="me/x")],
            "'gemma-3-1b', an id the built-in",
        ),
        (
            [
                extra_entry("twin", source="hub", hub_id="me/a"),
                extra_entry("twin", source="hub", hub_id="me/b"),
            ],
            "'twin' appears more than once",
        ),
        ([extra_entry("no-hub-id", source="hub")], "needs a `hub_id`"),
        ([extra_entry("no-path", source="local")], "needs the `path`"),
        ([extra_entry("../escape", source="hub", hub_id="me/x")], "models.0.id"),
        ([extra_entry("typo", source="hub", hub_id="me/x", paramters=1)], "paramters"),
    ],
    ids=["built-in id", "repeated id", "hub without id", "local without path", "bad id", "typo"],
)
def test_a_bad_extra_file_is_refused_clearly(
    tmp_path: Path, models: list[dict[str, Any]], message: str
) -> None:
    file = write(tmp_path / "extra.yaml", models)
    with pytest.raises(CatalogError, match="TUNEFORGE_CATALOG_FILE") as error:
        load_catalog(file)
    assert message in str(error.value)
    assert str(file) in str(error.value)


def test_a_missing_or_shapeless_extra_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- id: x\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="must hold a `models:` list"):
        load_catalog(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("models: [\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="cannot be read as YAML"):
        load_catalog(tmp_path / "broken.yaml")
