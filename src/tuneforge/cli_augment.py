"""`tuneforge datasets augment`: preview an augmentation of a processed dataset, or make the
augmented dataset in a job (registered on the `datasets` group)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tuneforge.cli_common import JsonFlag, api, echo_json, fail
from tuneforge.cli_datasets import Wait, _config, _done, _follow, _splits, datasets_app

if TYPE_CHECKING:
    from tuneforge.schemas.augmentation import AugmentPreview

#: The setting a `name:value` method gives, by method.
VALUE_FIELD = {"flip": "direction", "rotate": "degrees"}


def parse_method(text: str) -> dict[str, Any]:
    """`swap`, `swap:0.2` (a rate), `rotate:30` (degrees) or `flip:vertical` (a direction)."""
    name, _, value = text.partition(":")
    method: dict[str, Any] = {"name": name.strip()}
    if value:
        field = VALUE_FIELD.get(method["name"], "rate")
        if field == "direction":
            method[field] = value
        else:
            try:
                method[field] = float(value)
            except ValueError:
                fail(f"{text!r}: the part after ':' is the method's {field}, a number.")
    return method


def _preview_text(shown: AugmentPreview) -> None:
    for example in shown.examples:
        typer.echo(f"── row {example.row} ({example.tokens} tokens)")
        typer.echo(example.rendered.rstrip())
        if not example.variants:
            typer.echo("   (no variant: none came out different from the row)")
        for variant in example.variants:
            typer.echo(f"   ↳ {variant.methods} ({variant.tokens} tokens)")
            typer.echo("     " + variant.rendered.rstrip().replace("\n", "\n     "))
    copied = ", ".join(f"{name} {rows:,}" for name, rows in shown.copied_splits.items())
    typer.echo(
        f"Train rows: {shown.rows_in:,} → about {shown.rows_out:,} (at most "
        f"{shown.rows_out_max:,}); copied unchanged: {copied or 'none'}."
    )
    typer.echo(f"Tokens in the train split: about {shown.tokens_in:,} → {shown.tokens_out:,}.")
    typer.echo(
        f"Cost: {shown.cost.money:g} {shown.cost.currency}, about {shown.cost.seconds:g} s. "
        f"{shown.cost.note}"
    )


@datasets_app.command()
def augment(
    ctx: typer.Context,
    dataset_id: Annotated[
        str, typer.Argument(help="The processed dataset's id.", show_default=False)
    ],
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            "-m",
            help="A method, repeatable: synonym, insert, swap, delete (text), flip, crop, "
            "rotate, color (images); `name:value` sets its rate (rotate: degrees, flip: "
            "horizontal or vertical), e.g. -m swap:0.2 -m flip.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="An augmentation spec, YAML or JSON (methods, copies, combine, rewrite, seed, "
            "name); the options override it.",
        ),
    ] = None,
    copies: Annotated[
        int | None, typer.Option(min=1, max=10, help="Variants per train row (default 1).")
    ] = None,
    combine: Annotated[
        str | None, typer.Option(help="`one` method per variant (default) or `all` of them.")
    ] = None,
    rewrite: Annotated[
        str | None,
        typer.Option(help="Texts changed: prompts (default), answers or both."),
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="The seed (default 0).")] = None,
    name: Annotated[str | None, typer.Option(help="The new dataset's name.")] = None,
    preview: Annotated[
        bool,
        typer.Option(
            "--preview", help="Only show the first rows beside their variants, and the cost."
        ),
    ] = False,
    rows: Annotated[int, typer.Option(min=1, max=20, help="Rows shown by --preview.")] = 3,
    wait: Wait = True,
    as_json: JsonFlag = False,
) -> None:
    """Augment a processed dataset's train split into a new dataset (its test split is copied
    unchanged); each new row names its source row and methods. Exits 1 if the job failed."""
    spec = _config(config) if config is not None else {}
    if method:
        spec["methods"] = [parse_method(m) for m in method]
    options = {"copies": copies, "combine": combine, "rewrite": rewrite, "seed": seed}
    spec.update({key: value for key, value in options.items() if value is not None})
    if name is not None:
        spec["name"] = name
    if not spec.get("methods"):
        fail("Give at least one method (--method swap, ...) or a spec with --config.")
    with api(ctx) as client:
        if preview:
            shown = client.preview_augmentation(dataset_id, spec, rows)
            if as_json:
                echo_json(shown.model_dump(mode="json"))
            else:
                _preview_text(shown)
            return
        dataset = _follow(client, client.augment_dataset(dataset_id, spec), wait, as_json)
    if as_json:
        echo_json(dataset.model_dump(mode="json"))
    else:
        outcome = f"Dataset {dataset.id} ({dataset.name}) is {dataset.status}"
        if dataset.status == "ready":
            outcome += f" with {dataset.rows:,} rows: {_splits(dataset)}"
        typer.echo(outcome + ".")
        if dataset.error:
            typer.echo(dataset.error, err=True)
    _done(dataset)
