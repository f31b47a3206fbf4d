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
VALUE_FIELD = {
    "flip": "direction",
    "rotate": "degrees",
    "paraphrase": "probability",
    "back_translation": "language",
}
WORDED = {"direction", "language"}
LLM = {"paraphrase", "back_translation"}


def parse_method(text: str) -> dict[str, Any]:
    """`swap`, `swap:0.2` (a rate), `rotate:30` (degrees), `flip:vertical` (a direction),
    `paraphrase:0.5` (a probability) or `back_translation:German` (the pivot language)."""
    name, _, value = text.partition(":")
    method: dict[str, Any] = {"name": name.strip()}
    if value:
        field = VALUE_FIELD.get(method["name"], "rate")
        if field in WORDED:
            method[field] = value
        else:
            try:
                method[field] = float(value)
            except ValueError:
                fail(f"{text!r}: the part after ':' is the method's {field}, a number.")
    return method


def generator_of(
    url: str | None, model: str | None, key_secret: str | None, concurrency: int | None
) -> dict[str, Any] | None:
    """The generator the options name: an endpoint (`url` and `model`), a local model (`model`
    alone), or None when no option names one."""
    if url is None and model is None:
        if key_secret is not None or concurrency is not None:
            fail("--generator-key-secret and --generator-concurrency need --generator-url.")
        return None
    if model is None:
        fail("--generator-url needs --generator-model, the model's name at that API.")
    if url is None:
        if key_secret is not None or concurrency is not None:
            fail("--generator-key-secret and --generator-concurrency need --generator-url.")
        return {"kind": "local", "model": model}
    found: dict[str, Any] = {"kind": "endpoint", "base_url": url, "model": model}
    if key_secret is not None:
        found["api_key_secret"] = key_secret
    if concurrency is not None:
        found["concurrency"] = concurrency
    return found


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
    if shown.llm is not None:
        typer.echo(
            f"LLM: about {shown.llm.requests:,} requests, {shown.llm.prompt_tokens:,} prompt + "
            f"{shown.llm.completion_tokens:,} reply tokens."
        )
    for problem in shown.problems:
        typer.echo(f"Note: {problem}", err=True)
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
            help="A method, repeatable: synonym, insert, swap, delete (text), paraphrase, "
            "back_translation (LLM, with --generator-*), flip, crop, rotate, color (images); "
            "`name:value` sets its rate (rotate: degrees, flip: horizontal or vertical, "
            "paraphrase: probability, back_translation: pivot language), e.g. -m swap:0.2 "
            "-m flip -m back_translation:German.",
        ),
    ] = None,
    generator_url: Annotated[
        str | None,
        typer.Option(help="The LLM methods' OpenAI-compatible API, e.g. http://host:8000/v1."),
    ] = None,
    generator_model: Annotated[
        str | None,
        typer.Option(
            help="The LLM methods' model: its name at --generator-url, or without it a "
            "TuneForge model (catalog id or fine-tune id) the job runs."
        ),
    ] = None,
    generator_key_secret: Annotated[
        str | None,
        typer.Option(help="The name of your secret holding the API's key (never the key)."),
    ] = None,
    generator_concurrency: Annotated[
        int | None, typer.Option(min=1, max=32, help="Requests sent to the API at once (8).")
    ] = None,
    price: Annotated[
        float,
        typer.Option(min=0, max=1000, help="The API's price per 1k tokens, for --preview's cost."),
    ] = 0.0,
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
    generator = generator_of(
        generator_url, generator_model, generator_key_secret, generator_concurrency
    )
    for method in spec["methods"]:
        if isinstance(method, dict) and method.get("name") in LLM:
            if generator is not None:
                method["generator"] = generator
            elif "generator" not in method:
                fail(
                    f"{method['name']} asks a language model: name it with --generator-url and "
                    "--generator-model (an API), or --generator-model alone (a TuneForge model)."
                )
    with api(ctx) as client:
        if preview:
            shown = client.preview_augmentation(dataset_id, spec, rows, price)
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
