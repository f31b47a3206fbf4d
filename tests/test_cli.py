"""The `tuneforge` command line: startup cost, admin commands, config docs, serve's safety check,
and the `jobs` commands against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import add_user, bearer
from tests.server import free_port, running_server, server_env
from tuneforge.cli import app
from tuneforge.client import Client
from tuneforge.settings import Settings, reference_markdown

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "fastapi", "sqlalchemy", "nicegui", "uvicorn"}
runner = CliRunner()


def _env(settings: Settings) -> dict[str, str | None]:
    return {
        "TUNEFORGE_DATA_DIR": str(settings.data_dir),
        "TUNEFORGE_DATABASE_URL": settings.resolved_database_url,
    }


def test_help_is_fast_and_import_is_light() -> None:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "tuneforge", "--help"], capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - start
    assert "serve" in result.stdout and "jobs" in result.stdout
    assert elapsed < 1.5, f"`tuneforge --help` took {elapsed:.2f} s"

    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tuneforge.cli"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in trace.splitlines()}
    assert "typer" in imported, "the import trace should list what was imported"
    assert not imported & HEAVY, f"importing tuneforge.cli pulled in {imported & HEAVY}"


def test_version() -> None:
    from tuneforge import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tuneforge {__version__}"


def test_admin_create_user_and_token(
    make_settings: Callable[..., Settings], make_client: Callable[..., TestClient]
) -> None:
    settings = make_settings()
    env = _env(settings)
    created = runner.invoke(
        app, ["admin", "create-user", "grace", "--password", "long-enough", "--admin"], env=env
    )
    assert created.exit_code == 0, created.output
    assert "grace" in created.stdout

    issued = runner.invoke(app, ["admin", "token", "grace", "--name", "ci"], env=env)
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert token.startswith("tf_")
    assert issued.stdout == token + "\n", "only the token may go to stdout"

    api = make_client(auth="local")
    me = api.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["username"] == "grace"
    assert me.json()["is_admin"] is True
    assert [t["name"] for t in api.get("/api/v1/tokens", headers=bearer(token)).json()] == ["ci"]

    login = api.post("/api/v1/auth/login", json={"username": "grace", "password": "long-enough"})
    assert login.status_code == 201


def test_admin_errors_are_one_line(make_settings: Callable[..., Settings]) -> None:
    env = _env(make_settings())
    first = runner.invoke(
        app, ["admin", "create-user", "ada", "--password", "long-enough"], env=env
    )
    assert first.exit_code == 0, first.output

    cases = {
        ("create-user", "ada", "--password", "long-enough"): "already exists",
        ("create-user", "bob", "--password", "short"): "at least 8 characters",
        ("token", "nobody"): "no user 'nobody'",
    }
    for args, message in cases.items():
        result = runner.invoke(app, ["admin", *args], env=env)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
        assert result.stdout == ""


def test_create_user_prompts_for_the_password(
    make_settings: Callable[..., Settings], make_client: Callable[..., TestClient]
) -> None:
    env = _env(make_settings())
    typo = runner.invoke(
        app,
        ["admin", "create-user", "eve"],
        input="secret-pass\nsecret-typo\nsecret-pass\nsecret-pass\n",
        env=env,
    )
    assert typo.exit_code == 0, typo.output
    assert "secret-pass" not in typo.output, "the password must not be echoed"
    assert "do not match" in typo.output
    login = make_client(auth="local").post(
        "/api/v1/auth/login", json={"username": "eve", "password": "secret-pass"}
    )
    assert login.status_code == 201


def test_config_docs_match_the_committed_reference() -> None:
    result = runner.invoke(app, ["config-docs"])
    assert result.exit_code == 0
    assert result.stdout == reference_markdown()
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == result.stdout, "run `make docs` to regenerate docs/configuration.md"


def test_spec_docs_match_the_committed_reference() -> None:
    result = runner.invoke(app, ["spec-docs"])
    assert result.exit_code == 0 and "| `learning_rate` |" in result.stdout
    committed = (ROOT / "docs" / "training-spec.md").read_text()
    assert committed == result.stdout, "run `make docs` to regenerate docs/training-spec.md"


def test_serve_refuses_an_exposed_bind_without_a_secret_key(
    make_settings: Callable[..., Settings],
) -> None:
    env = {**_env(make_settings()), "TUNEFORGE_AUTH": "local", "TUNEFORGE_SECRET_KEY": None}
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "TUNEFORGE_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.output


def test_jobs_commands_without_a_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["jobs", "--url", url, "list"])
    assert result.exit_code == 1
    assert f"not reachable at {url}" in result.stderr


@pytest.mark.surface
def test_jobs_commands_against_a_server(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    token = add_user(settings, "ada", admin=True)
    with running_server(server_env(settings)) as url, Client(url, token) as tf:
        env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": token}
        done = tf.create_job("diagnostic", {"seconds": 2})

        watched = runner.invoke(app, ["jobs", "watch", done.id], env=env)
        assert watched.exit_code == 0, watched.output
        lines = watched.stdout.splitlines()
        assert "[status]   queued -> running" in lines
        assert any(line.startswith("[100%]") for line in lines)
        assert any(line.startswith("[info]") and "finished" in line for line in lines)
        assert lines[-1] == f"Job {done.id} succeeded."

        doomed = tf.create_job("diagnostic", {"seconds": 60})
        cancelled = runner.invoke(app, ["jobs", "cancel", doomed.id], env=env)
        assert cancelled.exit_code == 0, cancelled.output
        assert doomed.id in cancelled.stdout
        watched = runner.invoke(app, ["jobs", "watch", doomed.id], env=env)
        assert watched.exit_code == 1
        assert "cancelled" in watched.stdout.splitlines()[-1]

        table = runner.invoke(app, ["jobs", "list"], env=env)
        assert table.exit_code == 0, table.output
        header, *rows, summary = table.stdout.splitlines()
        assert header.split() == ["ID", "KIND", "STATUS", "PROGRESS", "CREATED", "MESSAGE"]
        assert [row.split()[:3] for row in rows] == [
            [doomed.id, "diagnostic", "cancelled"],
            [done.id, "diagnostic", "succeeded"],
        ]
        assert {row.index("diagnostic") for row in rows} == {header.index("KIND")}
        assert summary == "2 of 2 jobs"

        filtered = runner.invoke(app, ["jobs", "list", "--status", "succeeded", "--json"], env=env)
        assert filtered.exit_code == 0, filtered.output
        listed = json.loads(filtered.stdout)
        assert listed["total"] == 1
        assert [j["id"] for j in listed["items"]] == [done.id]

        shown = runner.invoke(app, ["jobs", "show", done.id, "--json"], env=env)
        assert json.loads(shown.stdout)["result"]["ticks"] >= 2
        shown = runner.invoke(app, ["jobs", "show", done.id], env=env)
        assert "status    succeeded" in shown.stdout.splitlines()

        missing = runner.invoke(app, ["jobs", "show", "no-such-job"], env=env)
        assert missing.exit_code == 1
        assert missing.stderr.strip() == "No job no-such-job."
        invalid = runner.invoke(app, ["jobs", "list", "--status", "sleeping"], env=env)
        assert invalid.exit_code == 1
        assert "status" in invalid.stderr
        anonymous = runner.invoke(
            app, ["jobs", "--url", url, "list"], env={"TUNEFORGE_TOKEN": None}
        )
        assert anonymous.exit_code == 1
        assert "Log in" in anonymous.stderr


def test_worker_runs_the_jobs_of_a_server_without_a_runner(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    token = add_user(settings, "ada", admin=True)
    env = server_env(settings, run_jobs=False)
    with running_server(env) as url, Client(url, token) as tf:
        assert tf.health()["runner"] == "external"
        worker = subprocess.Popen(
            [sys.executable, "-m", "tuneforge", "worker"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            job = tf.create_job("diagnostic", {"seconds": 1})
            assert tf.wait(job.id, timeout=30).status == "succeeded"
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=20)
    assert worker.returncode == 0, output
    assert "Worker stopped" in output
