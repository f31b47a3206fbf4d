"""`tuneforge graders`: the reward graders of GRPO runs and rewards evaluations, through a running
server's API: the library of grader types, and trying a grader set on a completion before a run
uses it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli_common import JsonFlag, api, api_group, echo_json, fail, print_table

graders_app = api_group("Reward graders: the library of types, and trying a set before a run.")


def _json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        fail(f"Cannot read {what} {path}: {error.strerror}.")
    except ValueError as error:
        fail(f"{what.capitalize()} {path} is not JSON: {error}.")


@graders_app.command("library")
def library(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The grader types, each with what it checks."""
    with api(ctx) as client:
        found = client.grader_library()
    if as_json:
        echo_json(found)
        return
    for entry in found:
        typer.secho(f"{entry['type']}: {entry['title']}", bold=True)
        typer.echo(f"  {entry['explanation']}")
        typer.echo(f"  example: {json.dumps(entry['example'])}\n")


@graders_app.command("try")
def try_graders(
    ctx: typer.Context,
    graders: Annotated[
        Path,
        typer.Argument(
            help="A JSON file with the grader list (as a GRPO spec's `graders`), or a spec "
            "file that has one under `graders`.",
            show_default=False,
        ),
    ],
    completion: Annotated[
        str, typer.Option(help="The completion to grade; `-` reads it from standard input.")
    ],
    row: Annotated[
        str | None,
        typer.Option(
            help='The dataset row it answers, as JSON: its reference columns, e.g. \'{"answer": '
            '"42"}\'.'
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Grade one completion with a grader set: each grade, why, and the total."""
    spec = _json_file(graders, "the grader file")
    listed = spec.get("graders") if isinstance(spec, dict) else spec
    if not isinstance(listed, list):
        fail(f"{graders} holds no grader list (a JSON list, or an object with `graders`).")
    try:
        values = json.loads(row) if row is not None else {}
    except ValueError as error:
        fail(f"--row is not JSON: {error}.")
    if not isinstance(values, dict):
        fail('--row must be a JSON object, such as \'{"answer": "42"}\'.')
    text = typer.get_text_stream("stdin").read() if completion == "-" else completion
    with api(ctx) as client:
        trial = client.try_graders(listed, text, values)
    if as_json:
        echo_json(trial)
        return
    print_table(
        [
            [
                g["name"],
                f"{g['weight']:g}",
                "-" if g["score"] is None else f"{g['score']:.2f}",
                g["reason"],
            ]
            for g in trial["grades"]
        ],
        ["GRADER", "WEIGHT", "SCORE", "WHY"],
    )
    typer.echo(f"total {trial['total']:.3f} of {trial['max_total']:g}")
