"""Templates over columns, e.g. `Classify: {review}`: names only, checked against the columns.

No expressions, attribute access, indexing or format specs: a template is literal text and
`{column}` holes (`{{` and `}}` stand for braces). Nothing in a template is ever evaluated.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneforge.errors import InvalidInput


@dataclass(frozen=True)
class Template:
    source: str
    pieces: tuple[tuple[str, str | None], ...]  # (literal text, column name or None)

    @property
    def columns(self) -> list[str]:
        return [name for _, name in self.pieces if name is not None]

    def render(self, row: Mapping[str, Any]) -> str:
        out = []
        for literal, name in self.pieces:
            out.append(literal)
            if name is not None:
                value = row.get(name)
                out.append("" if value is None else str(value))
        return "".join(out)


def parse_template(source: str, columns: list[str]) -> Template:
    """Parse `source`, refusing anything but `{column}` holes naming one of `columns`."""
    try:
        parsed = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise InvalidInput(
            f"The template {source!r} is malformed ({exc}); write a column as {{name}} and a "
            "literal brace as {{{{ or }}}}."
        ) from exc
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            pieces.append((literal, None))
            continue
        if spec or conversion or not name:
            raise InvalidInput(
                f"The template {source!r} has {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}: only plain {{column}} names are allowed."
            )
        if name not in columns:
            raise InvalidInput(
                f"The template {source!r} names {{{name}}}, which is not a column.",
                {"unknown": name, "columns": columns},
            )
        pieces.append((literal, name))
    return Template(source, tuple(pieces))
