"""YAML read with its numbers as people write them: `2e-4` and `1e5` are numbers, as in YAML 1.2
and JSON, where PyYAML's YAML 1.1 rules read them as the text "2e-4", which a spec's strict
numbers (`strict_numbers.py`) rightly refuse. Everything else is PyYAML's safe loading."""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """The safe loader, with an exponent alone (no dot needed) making a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def safe_load(text: str) -> Any:
    """`yaml.safe_load`, reading `2e-4` as the number 0.0002."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
