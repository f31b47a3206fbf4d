"""The recipe registry: a training method registered without touching any other code is offered
everywhere a trainer is (the API's schema and validation, the Train form, the CLI's options, the
settings reference), and gone again once unregistered."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient
from pydantic import Field, TypeAdapter, ValidationError

from tuneforge.cli_spec import spec_options
from tuneforge.training.recipe import Batching, Outcome, Recipe
from tuneforge.training.recipes.sft import RECIPE as SFT
from tuneforge.training.registry import (
    DEFAULT_TRAINER,
    TrainingSpec,
    UnknownTrainer,
    recipe,
    recipes,
    register,
    unregister,
)
from tuneforge.training.spec import SFTSpec, TrainingBase
from tuneforge.training.spec_docs import spec_markdown
from tuneforge.ui.train_form import SpecForm, trainers


class ToySpec(TrainingBase):
    """A method of our own: the shared settings and one more."""

    trainer: Literal["toy"] = Field(default="toy", description="`toy`: a trainer for tests.")
    toy_strength: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="How strongly the toy trains.",
        json_schema_extra={"group": "optimisation"},
    )


def _train(spec: ToySpec, *args: Any, **kwargs: Any) -> Outcome:
    raise AssertionError("a toy never trains")


TOY = Recipe(
    trainer="toy",
    title="Toy trainer",
    description="Trains nothing; it proves that a recipe is all a method needs.",
    spec=ToySpec,
    train=_train,
    batching=lambda spec: Batching(packed=True, answers_only=False),
    presets="{model}_{method}_toy",
)
SPEC = {"base_model": "gemma-3-270m", "dataset_id": "d"}
#: The recipes of `training/recipes/`, before any test registers one.
BUILT_IN = recipes()


@contextmanager
def registered(recipe: Recipe[Any]) -> Iterator[Recipe[Any]]:
    register(recipe)
    try:
        yield recipe
    finally:
        unregister(recipe.trainer)


@pytest.fixture
def toy() -> Iterator[Recipe[Any]]:
    with registered(TOY) as found:
        yield found


def test_a_registered_recipe_is_validated_and_described_by_the_api(
    toy: Recipe[Any], make_client: Callable[..., TestClient]
) -> None:
    validated = TypeAdapter(TrainingSpec).validate_python({**SPEC, "trainer": "toy"})
    assert isinstance(validated, ToySpec) and validated.toy_strength == 0.5
    with pytest.raises(ValidationError, match="toy_strength"):
        TypeAdapter(TrainingSpec).validate_python({**SPEC, "trainer": "toy", "toy_strength": 2})

    schema = make_client().get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    assert components["ToySpec"]["properties"]["toy_strength"]["maximum"] == 1
    every = {f"#/components/schemas/{r.spec.__name__}" for r in [*BUILT_IN, TOY]}
    estimate = schema["paths"]["/api/v1/trainings/estimate"]["post"]["requestBody"]
    assert _refs(estimate["content"]["application/json"]["schema"]) == every
    jobs = schema["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    train = jobs["schema"]["discriminator"]["mapping"]["train"].rsplit("/", 1)[-1]
    assert _refs(components[train]["properties"]["spec"]) == every


def _refs(schema: dict[str, Any]) -> set[str]:
    return {option["$ref"] for option in schema["oneOf"]}


def test_a_registered_recipe_is_in_the_train_form_the_cli_and_the_reference(
    toy: Recipe[Any],
) -> None:
    assert trainers() == {**{r.trainer: r.title for r in BUILT_IN}, "toy": "Toy trainer"}
    form = SpecForm(lambda: None, recipe("toy").spec)
    assert "toy_strength" in form.fields("optimisation")
    assert "packing" not in form.fields("optimisation"), "SFT's own settings are SFT's"

    options = spec_options()
    assert options["toy_strength"].names == ("--toy-strength",)
    assert "(trainers: toy)" in str(options["toy_strength"].annotation.__metadata__[0].help)

    reference = spec_markdown()
    assert "## `trainer: toy`: Toy trainer" in reference
    assert "| `toy_strength` | `0.5` | >= 0, <= 1 | How strongly the toy trains. |" in reference


def test_an_unregistered_recipe_is_gone_everywhere() -> None:
    with registered(TOY):
        assert "toy" in trainers()
    assert recipes() == BUILT_IN
    assert {"sft", "dpo", "orpo", "kto"} <= {r.trainer for r in BUILT_IN}
    assert "toy" not in trainers() and "trainer: toy" not in spec_markdown()
    with pytest.raises(ValidationError):
        TypeAdapter(TrainingSpec).validate_python({**SPEC, "trainer": "toy"})
    with pytest.raises(UnknownTrainer):
        recipe("toy")


def test_a_spec_without_a_trainer_is_sft() -> None:
    assert DEFAULT_TRAINER == "sft"
    assert isinstance(TypeAdapter(TrainingSpec).validate_python(SPEC), SFTSpec)
    assert recipe("sft") is SFT and SFT.spec is SFTSpec


def test_a_trainer_is_registered_once_and_matches_its_spec(toy: Recipe[Any]) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(TOY)
    with pytest.raises(ValueError, match="whose trainer is 'toy'"):
        Recipe(
            trainer="other",
            title="Other",
            description="A recipe whose spec names another trainer.",
            spec=ToySpec,
            train=_train,
            batching=TOY.batching,
        )


def test_preset_ids_tell_the_trainers_apart(toy: Recipe[Any]) -> None:
    assert SFT.preset_parts("gemma-3-270m_lora") == ("gemma-3-270m", "lora")
    assert TOY.preset_parts("gemma-3-270m_lora") is None
    assert TOY.preset_parts("gemma-3-270m_qlora_toy") == ("gemma-3-270m", "qlora")
    assert SFT.preset_parts("gemma-3-270m_qlora_toy") is None
    assert TOY.preset_id("gemma-3-1b", "full") == "gemma-3-1b_full_toy"


def test_every_recipe_module_registers_one_recipe_without_torch() -> None:
    code = (
        "import sys; from tuneforge.training.registry import recipes; "
        "print([r.trainer for r in recipes()], "
        "sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    modules = sorted(
        p.stem
        for p in (Path(__file__).parents[2] / "src/tuneforge/training/recipes").glob("*.py")
        if p.stem != "__init__"
    )
    assert result.stdout.strip() == f"{modules} []"
