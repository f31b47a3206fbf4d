"""The numbers a request body takes, as strict as its JSON schema (`integer`, `number`): never
`true`/`false` and never a string such as `"5"` or `"1e-4"`, which Pydantic's lax mode would
otherwise turn into 1 or 5. An integer may be written `5.0` (JSON Schema's `integer` allows it,
and the web UI's number fields send it), `5.5` is refused; a number may be written `1`.

A number is Pydantic's strict float, which takes an int. An integer cannot be `StrictInt` (it
refuses `5.0`), so a check of the input's type comes before Pydantic's own conversion. Give an
integer's bounds on its field (`x: Integer = Field(ge=1)`), not in an alias over `Integer`, where
they would land outside the check and out of the JSON schema. The JSON schema is Pydantic's
`integer`/`number` unchanged, and the optional forms cover `int | None` whole, so a field's
annotation stays `int | None` for the CLI's options and the UI's forms that read it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Strict
from pydantic_core import PydanticKnownError


def _not_bool_or_text(value: Any) -> Any:
    if isinstance(value, bool | str | bytes):
        raise PydanticKnownError("int_type")
    return value


_INTEGER_INPUT = BeforeValidator(_not_bool_or_text)

Integer = Annotated[int, _INTEGER_INPUT]
OptionalInteger = Annotated[int | None, _INTEGER_INPUT]
Number = Annotated[float, Strict()]
OptionalNumber = Annotated[float | None, Strict()]
