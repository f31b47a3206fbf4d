"""The `tuneforge` command line: run the server or a worker, manage users, follow jobs, bring
in and process datasets (`tuneforge.cli_datasets`).

Startup stays light: heavy modules (the web stack, the database layer, the HTTP client) are
imported inside the commands that need them, so `tuneforge --help` answers at once.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tuneforge import (
    __version__,
    cli_augment,  # noqa: F401  (adds `augment` to the datasets group)
    cli_synthesis,  # noqa: F401  (adds `synthesize` to the datasets group)
)
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
from tuneforge.cli_datasets import datasets_app
from tuneforge.cli_evaluations import evals_app
from tuneforge.cli_exports import exports_app
from tuneforge.cli_graders import graders_app
from tuneforge.cli_secrets import secrets_app
from tuneforge.cli_training import models_app, runs_app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from tuneforge.schemas.jobs import JobPublic
    from tuneforge.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
admin_app = typer.Typer(
    help="Manage users and API tokens directly in the configured database.",
    no_args_is_help=True,
)
jobs_app = api_group("List, inspect, cancel and follow jobs through a running server's API.")
app.add_typer(admin_app, name="admin")
app.add_typer(jobs_app, name="jobs")
app.add_typer(datasets_app, name="datasets")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
app.add_typer(evals_app, name="evals")
app.add_typer(graders_app, name="graders")
app.add_typer(exports_app, name="exports")
app.add_typer(secrets_app, name="secrets")


def _load_settings(**overrides: Any) -> Settings:
    """`Settings()` from the environment, with the given non-None overrides; exit 2 if invalid."""
    from pydantic import ValidationError

    from tuneforge.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail(f"Invalid configuration: {exc}", code=2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tuneforge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """TuneForge: a self-hosted studio for fine-tuning Gemma models."""


# -- server and worker --------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind to [default: TUNEFORGE_HOST or 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on [default: TUNEFORGE_PORT or 7860]."),
    ] = None,
) -> None:
    """Run the web studio and REST API (and, unless TUNEFORGE_RUN_JOBS=false, the jobs)."""
    from tuneforge.jobs.executor_check import ExecutorUnavailable, check_executor
    from tuneforge.settings import UnsafeConfiguration

    settings = _load_settings(host=host, port=port)
    try:
        settings.check_safe()
        if settings.run_jobs:
            check_executor(settings)
    except (UnsafeConfiguration, ExecutorUnavailable) as exc:
        fail(str(exc), code=2)
    from tuneforge.api.app import create_app
    from tuneforge.api.stopping import serve as run_server

    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    typer.echo(
        f"TuneForge {__version__} on http://{shown}:{settings.port} "
        f"({settings.auth_mode} auth); press Ctrl-C to stop."
    )
    run_server(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )


@app.command()
def worker() -> None:
    """Run queued jobs without the web server (start several to scale out)."""
    from tuneforge.db.session import make_engine, make_sessionmaker, migrate
    from tuneforge.jobs.executor_check import ExecutorUnavailable, check_executor
    from tuneforge.jobs.executors import make_runner

    settings = _load_settings()
    try:
        check_executor(settings)
    except ExecutorUnavailable as exc:
        fail(str(exc), code=2)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    runner = make_runner(settings, make_sessionmaker(engine))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runner.start()
    typer.echo(
        f"TuneForge {__version__} worker running up to {settings.max_concurrent_jobs} "
        "jobs at once; press Ctrl-C to stop."
    )
    stop.wait()
    runner.stop()
    engine.dispose()
    typer.echo("Worker stopped; running jobs continue and the next runner adopts them.")


# -- admin ----------------------------------------------------------------------------------------
@contextmanager
def _database() -> Iterator[sessionmaker[Session]]:
    """Sessions on the migrated, configured database; a domain error ends the command (exit 1)."""
    from tuneforge.db.session import make_engine, make_sessionmaker, migrate
    from tuneforge.errors import DomainError

    engine = make_engine(_load_settings().resolved_database_url)
    try:
        migrate(engine)
        yield make_sessionmaker(engine)
    except DomainError as exc:
        fail(exc.message)
    finally:
        engine.dispose()


@admin_app.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="The new user's name.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="The password (asked for when not given).",
        ),
    ],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
) -> None:
    """Create a user account with a password."""
    from tuneforge.db.session import transaction
    from tuneforge.services import accounts

    with _database() as factory, transaction(factory) as session:
        accounts.create_user(session, name, password, is_admin=admin)
    typer.echo(f"Created {'administrator' if admin else 'user'} {name}.")


@admin_app.command()
def token(
    user: Annotated[str, typer.Argument(help="The user the token acts as.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "cli",
) -> None:
    """Create an API token for a user and print only the token (for scripts)."""
    from tuneforge.db.session import transaction
    from tuneforge.errors import NotFound
    from tuneforge.services import accounts

    with _database() as factory, transaction(factory) as session:
        account = accounts.get_user(session, user)
        if account is None:
            raise NotFound(f"There is no user {user!r}.")
        _, secret = accounts.create_token(session, account, name)
    typer.echo(secret)


UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def _limit(text: str | None, current: int | None, *, sized: bool = False) -> int | None:
    """A limit given on the command line: `current` when not given, None for `default`."""
    if text is None:
        return current
    value = text.strip().lower().replace(" ", "").replace("_", "")
    if value == "default":
        return None
    number = value.rstrip("kmgtib") if sized else value
    if not number.isdigit() or value[len(number) :] not in UNITS:
        example = "a byte count such as 500MB or 20GiB" if sized else "a whole number"
        fail(f"{text!r} is not a limit: give {example}, or `default`.", code=2)
    return int(number) * UNITS[value[len(number) :]]


@admin_app.command()
def quota(
    user: Annotated[str, typer.Argument(help="The user whose quota to show or set.")],
    storage: Annotated[
        str | None, typer.Option(help="Storage quota in bytes (500MB, 20GiB), or `default`.")
    ] = None,
    concurrent_jobs: Annotated[
        str | None, typer.Option(help="Jobs queued or running at once, or `default`.")
    ] = None,
    jobs_per_day: Annotated[
        str | None, typer.Option(help="Jobs started in 24 hours, or `default`.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a user's quota beside their usage; with options, set their own limits first (a
    limit set to `default` follows the server's `TUNEFORGE_QUOTA_*` settings)."""
    from tuneforge.data.limits import size_text
    from tuneforge.db.session import transaction
    from tuneforge.errors import NotFound
    from tuneforge.schemas.quotas import QuotaSet
    from tuneforge.services import accounts, quotas

    settings = _load_settings()
    with _database() as factory, transaction(factory) as session:
        account = accounts.get_user(session, user)
        if account is None:
            raise NotFound(f"There is no user {user!r}.")
        view = quotas.quota_view(session, account, settings)
        if (storage, concurrent_jobs, jobs_per_day) != (None, None, None):
            limits = QuotaSet(
                storage_bytes=_limit(storage, view.own.storage_bytes, sized=True),
                concurrent_jobs=_limit(concurrent_jobs, view.own.concurrent_jobs),
                jobs_per_day=_limit(jobs_per_day, view.own.jobs_per_day),
            )
            view = quotas.store_quota(session, settings, account, limits)
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    own = view.own
    reserved = view.storage_bytes_reserved
    held = f" (+{size_text(reserved)} reserved by imports)" if reserved else ""
    rows = [
        ("storage", view.storage_bytes_used, view.storage_bytes_limit, own.storage_bytes),
        ("jobs at once", view.jobs_in_flight, view.concurrent_jobs_limit, own.concurrent_jobs),
        ("jobs per day", view.jobs_today, view.jobs_per_day_limit, own.jobs_per_day),
    ]
    print_table(
        [
            [
                name,
                size_text(used) + held if name == "storage" else f"{used:,}",
                "none" if limit is None else size_text(limit) if name == "storage" else limit,
                "server default" if set_here is None else "set for this user",
            ]
            for name, used, limit, set_here in rows
        ],
        ["QUOTA", "USED", "LIMIT", "FROM"],
    )


# -- jobs (through the API) -----------------------------------------------------------------------
def _job_row(job: JobPublic) -> list[object]:
    return [
        job.id,
        job.kind,
        job.status,
        f"{job.progress:.0%}",
        when(job.created_at),
        job.error or job.waiting or job.message or "",
    ]


JobId = Annotated[str, typer.Argument(help="The job's id.")]


@jobs_app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="Only jobs in this status (running, ...).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Show at most this many.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List your jobs, newest first."""
    with api(ctx) as client:
        jobs = client.list_jobs(status=status, kind=kind, limit=limit)
    if as_json:
        echo_json(jobs.model_dump(mode="json"))
        return
    print_table(
        [_job_row(job) for job in jobs.items],
        ["ID", "KIND", "STATUS", "PROGRESS", "CREATED", "MESSAGE"],
    )
    typer.echo(f"{len(jobs.items)} of {jobs.total} jobs")


@jobs_app.command()
def show(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show one job."""
    from tuneforge.jobs.resources import Resources

    with api(ctx) as client:
        job = client.get_job(job_id)
    if as_json:
        echo_json(job.model_dump(mode="json"))
        return
    print_table(
        [
            ("id", job.id),
            ("kind", job.kind),
            ("status", job.status),
            ("progress", f"{job.progress:.0%}"),
            ("message", job.waiting or job.message or "-"),
            ("error", job.error or "-"),
            ("runs on", " · ".join(p for p in (job.executor, job.node) if p) or "-"),
            (
                "asks for",
                Resources.model_validate(job.resources).describe() if job.resources else "-",
            ),
            ("attempt", job.attempt),
            ("created", when(job.created_at)),
            ("started", when(job.started_at)),
            ("finished", when(job.finished_at)),
            ("spec", json.dumps(job.spec)),
            ("result", json.dumps(job.result) if job.result is not None else "-"),
        ]
    )


@jobs_app.command()
def cancel(ctx: typer.Context, job_id: JobId) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    with api(ctx) as client:
        job = client.cancel_job(job_id)
    typer.echo(f"Job {job.id} is {job.status}.")


@jobs_app.command()
def watch(ctx: typer.Context, job_id: JobId) -> None:
    """Follow a job's progress and logs until it ends (exit 0 if it succeeded, else 1)."""
    with api(ctx) as client:
        for event in client.events(job_id):
            if event["type"] != "end":
                typer.echo(describe_event(event))
        job = client.get_job(job_id)
    typer.echo(f"Job {job.id} {job.status}" + (f": {job.error}" if job.error else "."))
    raise typer.Exit(0 if job.status == "succeeded" else 1)


# -- headless training ----------------------------------------------------------------------------
@app.command()
def train(
    config: Annotated[
        Path,
        typer.Argument(
            help="A YAML training spec (a preset is a good start) with `data:`, a data file.",
            exists=True,
            dir_okay=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option(help="Where checkpoints, TensorBoard logs and the model go.")
    ] = Path("tuneforge-run"),
) -> None:
    """Fine-tune on a local data file without a server (Ctrl-C saves a checkpoint; the same
    command again resumes from it)."""
    from tuneforge.errors import DomainError, JobCancelled
    from tuneforge.training.local_run import run_local

    try:
        outcome = run_local(config, output, _load_settings())
    except DomainError as exc:
        fail(exc.message)
    except JobCancelled as exc:
        fail(f"Stopped: {exc}.", code=130)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in outcome.metrics.items())
    typer.echo(f"Trained {outcome.steps} steps ({outcome.epochs:.2f} epochs): {shown}")
    typer.echo(f"Model ({outcome.kind}) saved in {outcome.output}")


# -- docs -----------------------------------------------------------------------------------------
@app.command("config-docs")
def config_docs() -> None:
    """Print the configuration reference (docs/configuration.md) as Markdown."""
    from tuneforge.settings import reference_markdown

    typer.echo(reference_markdown(), nl=False)


@app.command("spec-docs")
def spec_docs() -> None:
    """Print the training settings reference (docs/training-spec.md) as Markdown."""
    from tuneforge.training.spec_docs import spec_markdown

    typer.echo(spec_markdown(), nl=False)


def main() -> None:
    app(prog_name="tuneforge")
