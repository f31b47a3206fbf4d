"""`tuneforge secrets`: set, list and delete your secrets (HF_TOKEN, WANDB_API_KEY, ...) through
a running server's API. A value is read from a hidden prompt or an environment variable, never
from the command line (where the shell history and `ps` would keep it)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated

import typer

from tuneforge.cli_common import JsonFlag, api, api_group, echo_json, fail, print_table, when

secrets_app = api_group(
    "Your secrets (API keys for trackers, judges, hubs): stored encrypted, never shown again."
)

SecretName = Annotated[
    str,
    typer.Argument(help="The secret's name, like HF_TOKEN or WANDB_API_KEY.", show_default=False),
]


@secrets_app.command("set")
def set_secret(
    ctx: typer.Context,
    name: SecretName,
    from_env: Annotated[
        str | None,
        typer.Option(help="Read the value from this environment variable instead of a prompt."),
    ] = None,
) -> None:
    """Create or replace a secret; its value is asked for without echoing it."""
    if from_env is None:
        value: str = typer.prompt(f"Value of {name}", hide_input=True)
    else:
        value = os.environ.get(from_env, "")
        if not value:
            fail(f"The environment variable {from_env} is not set or empty.")
    with api(ctx) as client:
        client.set_secret(name, value)
    typer.echo(f"Secret {name} saved.")


@secrets_app.command("list")
def list_secrets(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Your secrets' names and when they were set (never their values)."""
    with api(ctx) as client:
        found = client.list_secrets()
    if as_json:
        echo_json(found)
        return
    if not found:
        typer.echo("No secrets yet: `tuneforge secrets set NAME`.")
        return
    print_table(
        [[s["name"], when(datetime.fromisoformat(s["updated_at"]))] for s in found],
        ["NAME", "UPDATED"],
    )


@secrets_app.command("delete")
def delete_secret(ctx: typer.Context, name: SecretName) -> None:
    """Delete a secret."""
    with api(ctx) as client:
        client.delete_secret(name)
    typer.echo(f"Secret {name} deleted.")
