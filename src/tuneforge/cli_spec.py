"""Command-line options made from the training specs: one typed option per field of every
registered trainer's spec, so `tuneforge runs start --base-model gemma-3-270m --dataset ID
--lora-r 8` needs no option written by hand.

`lora_r` is `--lora-r` (a field ending in `_id` also answers to its name without it:
`--dataset`), a flag is `--packing/--no-packing`, a choice lists its values, a list repeats its
option (`--tracking wandb --tracking mlflow`), and a list of objects takes each as JSON
(`--graders '{"type": "numeric_match", "column": "answer"}' --graders ...`; a YAML config holds
them more readably). Options sit in the help under the spec's groups.
`spec_values()` lays the options given over a YAML config and checks the result with the chosen
trainer's spec, so a value out of bounds ends the command with pydantic's reason and the
option's name.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from tuneforge.cli_common import fail
from tuneforge.training.registry import DEFAULT_TRAINER, UnknownTrainer, recipe, recipes
from tuneforge.training.spec import TrainingBase
from tuneforge.training.spec_docs import GROUPS

R = TypeVar("R")


@dataclass(frozen=True)
class SpecOption:
    """One field as an option: its names on the command line and the type typer parses."""

    field: str
    names: tuple[str, ...]
    annotation: Any
    #: Its items are objects (a grader), each given as JSON.
    objects: bool = False
    #: A whole number or a word (`devices`: 2 or `auto`): given as text, digits become a number.
    count_or_word: bool = False


def _optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        return next(a for a in get_args(annotation) if a is not NoneType)
    return annotation


def _count_or_word(annotation: Any) -> bool:
    """Whether a field takes a whole number or a literal word (`int | Literal["auto"]`)."""
    if get_origin(annotation) not in (Union, UnionType):
        return False
    kinds = [get_origin(a) or a for a in get_args(annotation) if a is not NoneType]
    return Literal in kinds and any(
        kind is int or (kind is Annotated and int in get_args(a))
        for kind, a in zip(kinds, get_args(annotation), strict=False)
    )


def _option_type(annotation: Any) -> Any:
    """What typer parses for a field's type: the type itself, its literal choices, or a list
    of strings (each item is checked by the spec), always optional (not given: not set)."""
    if _count_or_word(annotation):
        return str | None
    annotation = _optional(annotation)
    if get_origin(annotation) is list:
        return list[str] | None
    return annotation | None


def _of_objects(annotation: Any) -> bool:
    """Whether a field is a list of objects rather than of words or choices."""
    annotation = _optional(annotation)
    if get_origin(annotation) is not list:
        return False
    item = next(iter(get_args(annotation)), str)
    return item is not str and get_origin(item) is not Literal


def _help(name: str, field: FieldInfo, trainers: list[str], everyone: int) -> str:
    """The field's description (as `TrainingBase` gives it, for a field every trainer shares),
    and which trainers have it when not all do."""
    shared = TrainingBase.model_fields.get(name, field)
    text = (shared.description or "").replace("`", "")
    if len(trainers) < everyone:
        text += f" (trainers: {', '.join(trainers)})"
    return text


def _default(field: FieldInfo, dashed: str) -> str | bool:
    """What the help says the default is (the spec's: an option not given leaves it be)."""
    if field.is_required():
        return False
    value = field.get_default(call_default_factory=True)
    if isinstance(value, bool):
        return dashed if value else f"no-{dashed}"
    return "empty" if value is None or value == [] else str(value)


def _choices(found: list[tuple[str, FieldInfo]]) -> list[Any]:
    """The values of a literal field, over every trainer whose spec has it."""
    values = [
        value
        for _, field in found
        if get_origin(field.annotation) is Literal
        for value in get_args(field.annotation)
    ]
    return list(dict.fromkeys(values))


def spec_options() -> dict[str, SpecOption]:
    """An option per field of the registered trainers' specs (a field several trainers share
    is one option; the choices of a literal field are those of every trainer)."""
    fields: dict[str, list[tuple[str, FieldInfo]]] = {}
    for each in recipes():
        for name, field in each.spec.model_fields.items():
            fields.setdefault(name, []).append((each.trainer, field))
    options = {}
    for name, found in fields.items():
        trainers = [trainer for trainer, _ in found]
        field = found[0][1]
        choices = _choices(found)
        kind = Literal[tuple(choices)] if choices else field.annotation
        dashed = name.replace("_", "-")
        names: tuple[str, ...] = (
            (f"--{dashed}/--no-{dashed}",) if kind is bool else (f"--{dashed}",)
        )
        if name.endswith("_id"):
            names = (f"--{dashed.removesuffix('-id')}", *names)
        extra = field.json_schema_extra
        group = str(extra.get("group", "run")) if isinstance(extra, dict) else "run"
        objects = _of_objects(field.annotation)
        info = typer.Option(
            *names,
            help=_help(name, field, trainers, len(recipes()))
            + (" Give each as JSON; repeat the option for more." if objects else ""),
            show_default=DEFAULT_TRAINER if name == "trainer" else _default(field, dashed),
            rich_help_panel=GROUPS.get(group, GROUPS["run"]),
        )
        options[name] = SpecOption(
            name, names, Annotated[_option_type(kind), info], objects, _count_or_word(kind)
        )
    return options


def _parsed(option: SpecOption, value: Any) -> Any:
    """An option's value as the spec takes it: a list of objects parsed from their JSON, a
    number given as the digits of a number-or-word option."""
    if option.count_or_word and isinstance(value, str) and value.isdigit():
        return int(value)
    if not option.objects:
        return value
    try:
        return [json.loads(item) for item in value]
    except json.JSONDecodeError as exc:
        fail(f"{option.names[0]}: each value must be a JSON object ({exc}).")


def with_spec_options(command: Callable[..., R]) -> Callable[..., R]:
    """`command` with an option per spec field; it receives those given as `settings`, a
    mapping of field names to values (options not given are left out)."""
    options = spec_options()
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "settings"]
    added = [
        inspect.Parameter(
            o.field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=o.annotation
        )
        for o in options.values()
    ]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> R:
        given = {name: kwargs.pop(name) for name in options}
        settings = {
            name: _parsed(options[name], value)
            for name, value in given.items()
            if value is not None
        }
        return command(*args, settings=settings, **kwargs)

    del run.__wrapped__  # typer reads the signature below, not the command's
    run.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in [*kept, *added]}
    return run


def _option_name(field: str) -> str:
    option = spec_options().get(field)
    return option.names[0].split("/")[0] if option else field


def spec_values(config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The config's values with the options given laid over them, checked by the spec of the
    trainer they name (default `sft`); a value that does not fit ends the command."""
    values = {**config, **settings}
    trainer = str(values.get("trainer", DEFAULT_TRAINER))
    try:
        spec = recipe(trainer).spec
    except UnknownTrainer as exc:
        fail(f"{exc} Trainers: {', '.join(r.trainer for r in recipes())}.")
    try:
        spec.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"][:1])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"not a setting of trainer {trainer}"
            problems.append(f"{_option_name(field)}: {message}")
        fail("; ".join(problems) + ".")
    return values
