"""`tuneforge datasets synthesize`: make a raw dataset from documents with a model writing
examples for each chunk, in a job (registered on the `datasets` group); `datasets
resume-synthesis` continues one that failed or was cancelled."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tuneforge.cli_common import JsonFlag, api, describe_event, echo_json, fail
from tuneforge.cli_datasets import Wait, _config, _done, _splits, datasets_app

if TYPE_CHECKING:
    from tuneforge.client import Client
    from tuneforge.schemas.datasets import DatasetPublic

SHOWN_CHARS = 160


def build_spec(
    config: dict[str, Any],
    *,
    endpoint: str | None,
    model: str | None,
    api_key_secret: str | None,
    local_model: str | None,
    concurrency: int | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The synthesis spec: the config file's, with the options given on top."""
    spec = dict(config)
    generator = dict(spec.get("generator") or {})
    if local_model is not None:
        if endpoint is not None:
            fail("Give either --endpoint (with --model) or --local-model, not both.")
        generator = {"kind": "local", "model": local_model} | {
            k: v for k, v in generator.items() if k in ("temperature", "max_tokens")
        }
    elif endpoint is not None:
        generator |= {"kind": "endpoint", "base_url": endpoint}
    given = {"model": model, "api_key_secret": api_key_secret, "concurrency": concurrency}
    generator |= {k: v for k, v in given.items() if v is not None}
    if not generator.get("base_url") and generator.get("kind") != "local":
        fail("Name the model that writes the data: --endpoint URL --model NAME, or --local-model.")
    spec["generator"] = generator
    spec |= {k: v for k, v in options.items() if v is not None}
    return spec


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _follow(client: Client, dataset: DatasetPublic, wait: bool, as_json: bool) -> DatasetPublic:
    """With `wait`, the dataset once its job has ended, printing progress, logs and each pair
    kept as it is made (unless `as_json`)."""
    if not wait or dataset.status != "processing" or not dataset.job_id:
        return dataset
    if not as_json:
        typer.echo(f"Dataset {dataset.id} is being made in job {dataset.job_id}:")
        seen: set[tuple[str, str]] = set()
        for event in client.events(dataset.job_id):
            if event["type"] in ("progress", "log"):
                if event["type"] == "log":  # a failure's traceback: the last line says what
                    lines = str(event["data"]["message"]).strip().splitlines() or [""]
                    event = {**event, "data": {**event["data"], "message": lines[-1]}}
                typer.echo(describe_event(event))
            elif event["type"] == "samples":
                for item in event["data"]["items"]:
                    if (item["prompt"], item["answer"]) in seen:
                        continue
                    seen.add((item["prompt"], item["answer"]))
                    typer.echo(f"  Q: {_shown(item['prompt'])}")
                    typer.echo(f"  A: {_shown(item['answer'])}")
                    if item.get("source"):
                        typer.echo(f"     ({item['source']})")
    return client.wait_dataset(dataset.id)


def _outcome(client: Client, dataset: DatasetPublic, as_json: bool) -> None:
    if as_json:
        echo_json(dataset.model_dump(mode="json"))
        return
    outcome = f"Dataset {dataset.id} ({dataset.name}) is {dataset.status}"
    if dataset.status == "ready":
        outcome += f" with {dataset.rows:,} rows: {_splits(dataset)}"
    typer.echo(outcome + ".")
    if dataset.status != "processing":
        shown = client.synthesis_progress(dataset.id)
        dropped = ", ".join(f"{n:,} {reason}" for reason, n in shown.dropped.items())
        typer.echo(
            f"{shown.chunks_done:,} of {shown.chunks_total:,} chunks; {shown.kept:,} pairs "
            f"kept; dropped: {dropped or 'none'}; tokens {shown.prompt_tokens:,} in, "
            f"{shown.completion_tokens:,} out."
        )
    if dataset.error:
        typer.echo(dataset.error, err=True)


@datasets_app.command()
def synthesize(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="Documents: PDF, DOCX, PPTX, HTML, Markdown, TXT, or ZIPs of them.",
            show_default=False,
        ),
    ],
    name: Annotated[str | None, typer.Option(help="The new dataset's name.")] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="An OpenAI-compatible API that writes the data, up to its version "
            "(http://localhost:11434/v1 for Ollama)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="The model's name at --endpoint.", show_default=False)
    ] = None,
    api_key_secret: Annotated[
        str | None,
        typer.Option(help="The name of your secret holding the endpoint's API key."),
    ] = None,
    local_model: Annotated[
        str | None,
        typer.Option(
            help="Instead of an endpoint: a TuneForge model (catalog id such as gemma-3-270m, "
            "or a fine-tune's id) loaded by the job's worker."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=32, help="Requests sent to the endpoint at once.")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="What to write: qa (default), instructions, summaries, reasoning."),
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A prompt template file with {text} (and {document}, {section}, {pages}, "
            "{count}); default: the task's.",
        ),
    ] = None,
    pairs_per_chunk: Annotated[
        int | None, typer.Option(min=1, help="Examples asked for per chunk.")
    ] = None,
    max_chunks: Annotated[
        int | None, typer.Option(min=1, help="Generate from at most this many chunks.")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="The seed.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A synthesis spec, YAML or JSON (generator, task, template, chunking, "
            "curation, ...); the options override it.",
        ),
    ] = None,
    wait: Wait = True,
    as_json: JsonFlag = False,
) -> None:
    """Make a raw dataset from documents: a model writes examples for each chunk, curation
    keeps the grounded, distinct ones, and each row names its document, pages and chunk.
    Prints the pairs as they are made. Exits 1 if the job failed."""
    options: dict[str, Any] = {
        "task": task,
        "pairs_per_chunk": pairs_per_chunk,
        "max_chunks": max_chunks,
        "seed": seed,
    }
    if template is not None:
        try:
            options["template"] = template.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"Cannot read the template {template}: {exc}")
    spec = build_spec(
        _config(config) if config is not None else {},
        endpoint=endpoint,
        model=model,
        api_key_secret=api_key_secret,
        local_model=local_model,
        concurrency=concurrency,
        options=options,
    )
    with api(ctx) as client:
        dataset = _follow(client, client.synthesize(list(files), spec, name), wait, as_json)
        _outcome(client, dataset, as_json)
    _done(dataset)


@datasets_app.command("resume-synthesis")
def resume_synthesis(
    ctx: typer.Context,
    dataset_id: Annotated[
        str, typer.Argument(help="The synthesised dataset's id.", show_default=False)
    ],
    wait: Wait = True,
    as_json: JsonFlag = False,
) -> None:
    """Continue a synthesis that failed or was cancelled; the chunks it finished are not
    generated again."""
    with api(ctx) as client:
        dataset = _follow(client, client.resume_synthesis(dataset_id), wait, as_json)
        _outcome(client, dataset, as_json)
    _done(dataset)
