"""What the `tuneforge` command groups share: one-line failures, aligned tables and JSON output,
and, for the groups that work through a running server's API (`jobs`, `datasets`), the
`--url`/`--token` options and a client whose errors end the command.

Light on purpose, like `tuneforge.cli`: the HTTP client is imported only when a command runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, NoReturn

import typer

from tuneforge.jobs.events import metric_values

if TYPE_CHECKING:
    from datetime import datetime

    from tuneforge.client import Client

DEFAULT_URL = "http://127.0.0.1:7860"

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with `message` on stderr (in red) and exit `code`."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str] | None = None) -> None:
    """Print rows as aligned columns (the last column is not padded)."""
    cells = [[str(c) for c in row] for row in ([headers] if headers else []) + list(rows)]
    if not cells:
        return
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        typer.echo("  ".join([*padded, row[-1]]).rstrip())


def echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def when(moment: datetime | None) -> str:
    """A timestamp in local time, or `-`."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


# -- groups that work through the API -------------------------------------------------------------
class Server(NamedTuple):
    url: str
    token: str | None


def _server(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option("--url", envvar="TUNEFORGE_URL", help="The TuneForge server.")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="TUNEFORGE_TOKEN", help="An API token (`tf_...`)."),
    ] = None,
) -> None:
    ctx.obj = Server(url, token)


def api_group(help: str) -> typer.Typer:
    """A command group that talks to a server: `--url` and `--token` come before its command
    (`tuneforge jobs --url URL list`), or from TUNEFORGE_URL and TUNEFORGE_TOKEN."""
    group = typer.Typer(help=help, no_args_is_help=True)
    group.callback()(_server)
    return group


@contextmanager
def api(ctx: typer.Context) -> Iterator[Client]:
    """A client for the group's server; API and connection errors end the command (exit 1)."""
    import httpx

    from tuneforge.client import ApiError, Client

    server: Server = ctx.obj
    try:
        with Client(server.url, server.token) as client:
            yield client
    except ApiError as exc:
        fail(str(exc))
    except httpx.ConnectError:
        fail(f"The TuneForge server is not reachable at {server.url}.")
    except httpx.TransportError as exc:
        fail(f"The connection to the TuneForge server at {server.url} failed: {exc}")


def describe_event(event: dict[str, Any]) -> str:
    """One line for a job event: a bracketed tag, then what happened."""
    data, tag = event["data"], event["type"]
    if tag == "status":
        text = f"{data['previous']} -> {data['status']}" if "previous" in data else data["status"]
        text += f": {data['error']}" if data.get("error") else ""
    elif tag == "progress":
        tag, text = f"{data['progress']:.0%}", data.get("message") or ""
    elif tag == "metric":
        values = metric_values(data)
        text = f"step {data['step']}: " + " ".join(f"{k}={v:g}" for k, v in values.items())
    elif tag == "samples":
        text = f"step {data['step']}: " + " | ".join(
            f"{item['prompt'][:40]!r} -> {item['answer'][:60]!r}" for item in data["items"]
        )
    elif tag == "log":
        tag, text = data["level"], data["message"]
    elif tag == "artifact":
        text = f"{data['name']} ({data['size']} bytes)"
    else:
        text = json.dumps(data)
    return f"{'[' + tag + ']':<10} {text}".rstrip()
