"""`tuneforge datasets`: upload or import, list, show, page through, process and delete datasets
through a running server's API (the HTTP client and the schemas are imported only when a command
runs)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from tuneforge.cli_common import (
    JsonFlag,
    api,
    api_group,
    describe_event,
    echo_json,
    fail,
    print_table,
    when,
)

if TYPE_CHECKING:
    from tuneforge.client import Client
    from tuneforge.data.validation import ValidationReport
    from tuneforge.schemas.datasets import DatasetPublic, RowsPage

datasets_app = api_group(
    "Upload, inspect and process datasets into training data through a running server's API."
)

DatasetId = Annotated[str, typer.Argument(help="The dataset's id.", show_default=False)]
CELL = 30  # characters shown of a value in a table of rows, at least
TABLE_WIDTH = 100  # ... and more when there are few columns


Wait = Annotated[
    bool, typer.Option(help="Follow the job until it ends, or only start it (--no-wait).")
]


class Kind(StrEnum):
    raw = "raw"
    processed = "processed"


class Source(StrEnum):
    huggingface = "huggingface"
    server_path = "server_path"


ROLES = ("system", "user", "assistant", "chosen", "rejected", "text")


# -- formatting -----------------------------------------------------------------------------------
def _size(count: int) -> str:
    value, unit = float(count), "B"
    for larger in ("KB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def _splits(dataset: DatasetPublic) -> str:
    """Rows per split: `train 24, test 6`."""
    return ", ".join(f"{name} {count:,}" for name, count in dataset.splits.items())


def _rows(dataset: DatasetPublic) -> str:
    return f"{dataset.rows:,}" + (f" ({_splits(dataset)})" if dataset.splits else "")


def _mapping(mapping: dict[str, Any] | None) -> str:
    """A mapping on one line: `conversation (fields): user=question, assistant=answer`."""
    if not mapping:
        return "none (the format was not recognised: give a mapping with `process --config`)"
    parts = []
    if mapping.get("messages_column"):
        parts.append(f"turns={mapping['messages_column']}")
    for role in ROLES:
        source = mapping.get(role)
        if source:
            parts.append(f"{role}={source.get('column') or json.dumps(source.get('template'))}")
    if mapping.get("system_prompt"):
        parts.append(f"system_prompt={json.dumps(mapping['system_prompt'])}")
    if mapping.get("image_column"):
        parts.append(f"image={mapping['image_column']}")
    shape = f"{mapping.get('mode', 'conversation')} ({mapping.get('layout', 'fields')})"
    return shape + (": " + ", ".join(parts) if parts else "")


def _summary(dataset: DatasetPublic) -> None:
    """The dataset as `key  value` lines, then its warnings."""
    ready = dataset.status == "ready"
    lines: list[tuple[str, object]] = [
        ("id", dataset.id),
        ("name", dataset.name),
        ("kind", dataset.kind),
        ("status", dataset.status),
        ("format", dataset.format or "-"),
        ("rows", _rows(dataset)),
        ("columns", ", ".join(f"{c.name} ({c.type})" for c in dataset.columns) or "-"),
        ("mapping", _mapping(dataset.mapping) if dataset.mapping or ready else "-"),
        ("origin", f"{dataset.origin}: {dataset.origin_ref}"),
    ]
    if dataset.source_id:
        lines.append(("source", dataset.source_id))
    if dataset.job_id:
        lines.append(("job", dataset.job_id))
    if dataset.error:
        lines.append(("error", dataset.error))
    lines += [("size", _size(dataset.size_bytes)), ("created", when(dataset.created_at))]
    print_table(lines)
    for warning in dataset.warnings:
        typer.echo(f"warning: {warning}")


def _turns(value: Any) -> str | None:
    """A list of chat turns as `user: ... | assistant: ...`, or None for any other value."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(turn, dict) and "role" in turn for turn in value):
        return None
    texts = []
    for turn in value:
        content = turn.get("content")
        if isinstance(content, list):  # parts: text, or an image
            content = "".join(
                str(part.get("text", "")) if part.get("type") == "text" else "<image>"
                for part in content
                if isinstance(part, dict)
            )
        texts.append(f"{turn['role']}: {content}")
    return " | ".join(texts)


def _cell(value: Any, width: int) -> str:
    """A value on one line (chat turns as `role: text`), shortened to `width` characters."""
    text = _turns(value)
    if text is None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _rows_table(page: RowsPage) -> None:
    """The page's rows as a table (the row number, then one column per field), then where the
    page is in its split; rows are numbered from 0, like `--offset`."""
    fields = list(dict.fromkeys(key for row in page.rows for key in row))
    width = max(CELL, TABLE_WIDTH // max(1, len(fields)))
    print_table(
        [
            [page.offset + number, *(_cell(row.get(key), width) for key in fields)]
            for number, row in enumerate(page.rows)
        ],
        ["#", *fields],
    )
    end = page.offset + len(page.rows)
    where = f"rows {page.offset}-{end - 1}" if page.rows else f"no rows from {page.offset}"
    more = f"; next: --offset {end}" if end < page.total else ""
    typer.echo(f"{where} of {page.total:,} ({page.split}){more}")


def _report(report: ValidationReport) -> None:
    typer.echo(
        f"rows in {report.rows_in:,}, out {report.rows_out:,}, dropped {report.dropped:,} "
        f"(policy: {report.policy})"
    )
    print_table([[f"  {p.code}", f"{p.count:,}", p.description] for p in report.problems])


def _report_of(client: Client, dataset: DatasetPublic) -> ValidationReport | None:
    """The processed dataset's validation report, or None when there is none (yet)."""
    from tuneforge.client import ApiError

    if dataset.kind != "processed" or dataset.status == "processing":
        return None
    try:
        return client.dataset_report(dataset.id)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _follow(client: Client, dataset: DatasetPublic, wait: bool, as_json: bool) -> DatasetPublic:
    """With `wait`, the dataset once its job (if it has one) has finished, printing the job's
    progress and logs on the way (unless `as_json`; `jobs watch` shows them in full); else the
    dataset as it is."""
    if not wait or dataset.status != "processing" or not dataset.job_id:
        return dataset
    if not as_json:
        typer.echo(f"Dataset {dataset.id} is processing in job {dataset.job_id}:")
        for event in client.events(dataset.job_id):
            if event["type"] == "log":  # of a failure's traceback, the last line says what
                lines = str(event["data"]["message"]).strip().splitlines() or [""]
                event = {**event, "data": {**event["data"], "message": lines[-1]}}
            if event["type"] in ("progress", "log"):
                typer.echo(describe_event(event))
    return client.wait_dataset(dataset.id)


def _done(dataset: DatasetPublic) -> NoReturn:
    """End the command: exit 1 if the dataset failed; say how to follow a job still running."""
    if dataset.status == "processing" and dataset.job_id:
        typer.echo(f"Follow its job with `tuneforge jobs watch {dataset.job_id}`.", err=True)
    raise typer.Exit(1 if dataset.status == "failed" else 0)


def _config(path: Path) -> dict[str, Any]:
    """A processing config from a YAML (`.yaml`, `.yml`) or JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"Cannot read the processing config {path}: {exc}")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        from tuneforge.yaml_numbers import safe_load

        try:
            data = safe_load(text)
        except yaml.YAMLError as exc:
            fail(f"The processing config {path} is not valid YAML: {exc}")
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            fail(f"The processing config {path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        fail(f"The processing config {path} must be a mapping of settings (mapping, split, ...).")
    return data


# -- commands -------------------------------------------------------------------------------------
@datasets_app.command()
def upload(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
            help="A CSV, TSV, JSON, JSONL, Parquet, XLSX or TXT file, or a ZIP of images.",
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="A name for it (default: the file name).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload a data file as a raw dataset and show the format and mapping recognised."""
    with api(ctx) as client:
        dataset = client.upload_dataset(path, name=name)
    if as_json:
        echo_json(dataset.model_dump(mode="json"))
        return
    _summary(dataset)
    if dataset.mapping:
        typer.echo(f"Next: tuneforge datasets process {dataset.id}")


@datasets_app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(
            show_default=False,
            help="A Hugging Face dataset id (tatsu-lab/alpaca), or a path on the server.",
        ),
    ],
    source: Annotated[
        Source,
        typer.Option(
            help="huggingface: a dataset on the Hub (administrators: also a dataset directory "
            "on the server); server_path: a data file on the server (administrators)."
        ),
    ] = Source.huggingface,
    subset: Annotated[str | None, typer.Option(help="The configuration (subset).")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split (default: all).")] = None,
    revision: Annotated[str | None, typer.Option(help="A branch, tag or commit.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for it (default: the path).")] = None,
    wait: Wait = True,
    as_json: JsonFlag = False,
) -> None:
    """Import a Hugging Face dataset or a file on the server, in a job (exit 1 if it fails)."""
    with api(ctx) as client:
        started = client.import_dataset(
            path, source.value, subset=subset, split=split, revision=revision, name=name
        )
        dataset = _follow(client, started, wait, as_json)
    if as_json:
        echo_json(dataset.model_dump(mode="json"))
    else:
        _summary(dataset)
    _done(dataset)


@datasets_app.command("list")
def list_datasets(
    ctx: typer.Context,
    kind: Annotated[Kind | None, typer.Option(help="Only this kind.")] = None,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Show at most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List your datasets, newest first."""
    with api(ctx) as client:
        datasets = client.list_datasets(kind=kind and kind.value, offset=offset, limit=limit)
    if as_json:
        echo_json(datasets.model_dump(mode="json"))
        return
    print_table(
        [
            [d.id, d.kind, d.status, d.format or "-", f"{d.rows:,}", when(d.created_at), d.name]
            for d in datasets.items
        ],
        ["ID", "KIND", "STATUS", "FORMAT", "ROWS", "CREATED", "NAME"],
    )
    typer.echo(f"{len(datasets.items)} of {datasets.total} datasets")


@datasets_app.command()
def show(
    ctx: typer.Context,
    dataset_id: DatasetId,
    limit: Annotated[int, typer.Option(min=0, max=200, help="Show this many rows.")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Show a dataset: what it is, its first rows and (when processed) its report."""
    with api(ctx) as client:
        dataset = client.get_dataset(dataset_id)
        if as_json:
            echo_json(dataset.model_dump(mode="json"))
            return
        ready = dataset.status == "ready" and limit > 0
        page = client.dataset_rows(dataset_id, limit=limit) if ready else None
        report = _report_of(client, dataset)
    _summary(dataset)
    if report is not None:
        typer.echo("")
        _report(report)
    if page is not None:
        typer.echo("")
        _rows_table(page)


@datasets_app.command("rows")
def rows(
    ctx: typer.Context,
    dataset_id: DatasetId,
    split: Annotated[str | None, typer.Option(help="The split (default: the first).")] = None,
    offset: Annotated[int, typer.Option(min=0, help="The first row (0-based).")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many rows.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Page through a dataset's rows (long values are shortened)."""
    with api(ctx) as client:
        page = client.dataset_rows(dataset_id, split=split, offset=offset, limit=limit)
    if as_json:
        echo_json(page.model_dump(mode="json"))
        return
    _rows_table(page)


@datasets_app.command()
def process(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(help="The raw dataset's id.", show_default=False)],
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A processing config, YAML or JSON (mapping, split, max_length, on_problem, "
            "drop_duplicates, ...); the options below override it.",
        ),
    ] = None,
    test_size: Annotated[
        float | None,
        typer.Option(help="The test split: a fraction below 1, or rows."),
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(min=16, help="Longest example in Gemma tokens (default 2048).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The processed dataset's name.")] = None,
    wait: Wait = True,
    as_json: JsonFlag = False,
) -> None:
    """Process a raw dataset into conversations and print the validation report.

    The mapping is the one proposed for the dataset unless the config gives one. Large datasets
    are processed in a job. Exits 1 if processing failed.
    """
    body = _config(config) if config is not None else {}
    overrides = {"name": name, "max_length": max_length}
    body.update({key: value for key, value in overrides.items() if value is not None})
    if test_size is not None:
        body["split"] = {**(body.get("split") or {}), "test_size": test_size}
    with api(ctx) as client:
        if "mapping" not in body:
            source = client.get_dataset(dataset_id)
            if source.status != "ready":
                fail(f"Dataset {dataset_id} is {source.status}; it can be processed once ready.")
            if not source.mapping:
                fail(
                    f"No mapping was proposed for dataset {dataset_id} (its format was not "
                    "recognised); give one in a config file with --config."
                )
            body["mapping"] = source.mapping
        dataset = _follow(client, client.process_dataset(dataset_id, body), wait, as_json)
        report = _report_of(client, dataset)
    if as_json:
        echo_json(
            {
                "dataset": dataset.model_dump(mode="json"),
                "report": report.model_dump(mode="json") if report is not None else None,
            }
        )
    else:
        outcome = f"Dataset {dataset.id} ({dataset.name}) is {dataset.status}"
        if dataset.status == "ready":
            outcome += f" with {dataset.rows:,} rows: {_splits(dataset)}"
        typer.echo(outcome + ".")
        if report is not None:
            _report(report)
        if dataset.error:
            typer.echo(f"error: {dataset.error}")
    _done(dataset)


@datasets_app.command()
def delete(ctx: typer.Context, dataset_id: DatasetId) -> None:
    """Delete a dataset and its files (datasets processed from it stay)."""
    with api(ctx) as client:
        client.delete_dataset(dataset_id)
    typer.echo(f"Deleted dataset {dataset_id}.")
