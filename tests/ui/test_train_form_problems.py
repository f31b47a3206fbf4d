"""What the spec says is wrong with the Train form's fields, said under each field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tuneforge.training.spec import SFTSpec
from tuneforge.ui.train_form import field_problems


def test_the_specs_refusals_are_named_after_their_fields() -> None:
    with pytest.raises(ValidationError) as refused:
        SFTSpec.model_validate(
            {"base_model": "tiny-random-gemma3", "dataset_id": "d", "devices": 0, "batch_size": 0}
        )
    said = field_problems(refused.value)
    assert said["devices"] == "Devices must be `auto` or a whole number from 1 to 64."
    assert said["batch_size"].startswith("Input should be greater than or equal to 1")
    assert set(said) == {"devices", "batch_size"}
