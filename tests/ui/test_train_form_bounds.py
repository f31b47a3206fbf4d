"""A numeric setting's bounds, as the forms (Train, dataset processing, evaluation) say them and
check them."""

from __future__ import annotations

from tuneforge.data.splits import SplitSpec
from tuneforge.training.spec import SFTSpec
from tuneforge.ui.number_field import Bounds
from tuneforge.ui.train_form import _nullable

SCHEMA = SFTSpec.model_json_schema()["properties"]


def bounds(name: str, integer: bool) -> Bounds:
    schema, nullable = _nullable(SCHEMA[name])
    return Bounds.of(schema, integer=integer, nullable=nullable)


def test_bounds_are_said_in_words() -> None:
    assert bounds("learning_rate", False).hint() == "More than 0, at most 1"
    assert bounds("max_length", True).hint() == "A whole number, 16 to 131,072"
    assert bounds("max_steps", True).hint() == "Empty, or a whole number, 1 to 10,000,000"
    assert bounds("lora_dropout", False).hint() == "At least 0, less than 1"


def test_values_outside_them_get_a_message() -> None:
    rate, length, steps = (
        bounds("learning_rate", False),
        bounds("max_length", True),
        bounds("max_steps", True),
    )
    assert rate.problem(2e-4) is None and rate.problem(1) is None
    assert rate.problem(0) == "0 is out of range: more than 0, at most 1."
    assert rate.problem(1000) == "1000 is out of range: more than 0, at most 1."
    assert length.problem(1) == "1 is out of range: a whole number, 16 to 131,072."
    assert length.problem(16.5) is not None  # not a whole number
    assert length.problem(None) is not None and steps.problem(None) is None


def test_bounds_come_from_any_spec_field() -> None:
    assert Bounds.for_field(SplitSpec, "sample_size", integer=True).hint() == (
        "Empty, or a whole number, at least 1"
    )
    assert Bounds.for_field(SplitSpec, "seed", integer=True).hint() == "Any whole number"
    assert Bounds.for_field(SplitSpec, "test_size", integer=False).problem(0) is not None
