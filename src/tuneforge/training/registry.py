"""The training recipes, keyed by `trainer`, and the spec union they make.

Every module of `training/recipes/` defines one `RECIPE`; the registry imports them the first
time it is asked (they are light: no torch), so adding a method is adding its recipe module, its
spec and its presets. `register()` adds a recipe from elsewhere (a plugin, a test) and
`unregister()` takes it away again.

`TrainingSpec` validates and describes itself with `spec_adapter()` at
the moment it is used, so the API's schema and validation, the Train form, the CLI options and
the spec docs follow the registry as it is, with nothing to rebuild.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Annotated, Any, Union

from pydantic import (
    Discriminator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Tag,
    TypeAdapter,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from tuneforge.training.recipe import Recipe
from tuneforge.training.spec import TrainingBase

#: The trainer of a spec that names none.
DEFAULT_TRAINER = "sft"

_RECIPES: dict[str, Recipe[Any]] = {}


class UnknownTrainer(LookupError):
    """No recipe is registered under this trainer."""


@cache
def _discover() -> None:
    from tuneforge.training import recipes as package

    for module in pkgutil.iter_modules(package.__path__):
        found = importlib.import_module(f"{package.__name__}.{module.name}")
        recipe = getattr(found, "RECIPE", None)
        if not isinstance(recipe, Recipe):
            raise TypeError(f"{found.__name__} defines no RECIPE")
        _RECIPES.setdefault(recipe.trainer, recipe)


def register(recipe: Recipe[Any]) -> Recipe[Any]:
    """Make `recipe` known under its trainer; a trainer already taken is refused."""
    _discover()
    if recipe.trainer in _RECIPES:
        raise ValueError(f"A recipe is already registered for trainer {recipe.trainer!r}.")
    _RECIPES[recipe.trainer] = recipe
    return recipe


def unregister(trainer: str) -> None:
    """Forget the recipe of `trainer` (one that `register()` added)."""
    _discover()
    _RECIPES.pop(trainer, None)


def recipes() -> list[Recipe[Any]]:
    """Every recipe: the built-in ones in module order, then those registered later."""
    _discover()
    return list(_RECIPES.values())


def recipe(trainer: str) -> Recipe[Any]:
    """The recipe of `trainer`; `UnknownTrainer` when there is none."""
    _discover()
    found = _RECIPES.get(trainer)
    if found is None:
        raise UnknownTrainer(f"There is no trainer {trainer!r}.")
    return found


def recipe_for(spec: TrainingBase) -> Recipe[Any]:
    """The recipe a validated spec belongs to."""
    return recipe(spec.trainer)


def trainer_of(value: Any) -> str:
    """The trainer a spec (or the mapping of one) names; `DEFAULT_TRAINER` when absent."""
    if isinstance(value, dict):
        return str(value.get("trainer", DEFAULT_TRAINER))
    return str(getattr(value, "trainer", DEFAULT_TRAINER))


def spec_adapter() -> TypeAdapter[TrainingBase]:
    """Validates any registered trainer's spec (chosen by `trainer`, default `sft`) and makes
    the JSON schema of their union."""
    return _adapter(tuple((r.trainer, r.spec) for r in recipes()))


@cache
def _adapter(specs: tuple[tuple[str, type[TrainingBase]], ...]) -> TypeAdapter[TrainingBase]:
    members = tuple(Annotated[spec, Tag(trainer)] for trainer, spec in specs)
    union = Annotated[Union[members], Discriminator(trainer_of)]  # type: ignore[valid-type]  # noqa: UP007
    adapter: TypeAdapter[TrainingBase] = TypeAdapter(union)
    return adapter


class _Registered:
    """Makes `TrainingSpec` the union of the registered trainers' specs whenever it validates
    or describes a value, so a recipe registered after a model or a route was built counts."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        def validate(value: Any) -> TrainingBase:
            return spec_adapter().validate_python(value)

        return core_schema.no_info_plain_validator_function(validate)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(spec_adapter().core_schema)


#: Every registered trainer's spec; the `trainer` field chooses (default `sft`).
TrainingSpec = Annotated[TrainingBase, _Registered()]
