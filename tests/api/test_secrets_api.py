"""Secrets through the API, the CLI and the worker's reader: values go in encrypted and never
come out (not in a response, not in the database in clear, not in the log), names are checked,
another user's secret is a 404, and a changed server key gives a clear error."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import add_user, bearer
from tests.server import running_server, server_env
from tuneforge.cli import app
from tuneforge.client import Client
from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Secret, User
from tuneforge.errors import SecretUnreadable
from tuneforge.settings import Settings

VALUE = "wandb-0123456789abcdef-very-secret"


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local")
    return client, bearer(add_user(settings, "alice")), bearer(add_user(settings, "bob"))


def _read(settings: Settings, username: str, *names: str) -> dict[str, str]:
    """What a worker of `username` reads."""
    with transaction(make_sessionmaker(make_engine(settings.resolved_database_url))) as session:
        owner = session.scalars(select(User).where(User.username == username)).one()
        return secret_values(session, settings, owner.id, names)


def _rows(settings: Settings) -> list[tuple[str, bytes]]:
    with transaction(make_sessionmaker(make_engine(settings.resolved_database_url))) as session:
        return [(s.name, s.ciphertext) for s in session.scalars(select(Secret))]


def test_round_trip_never_shows_the_value(api, settings, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client, alice, _ = api
    seen: list[str] = []

    def check(response, status: int):
        assert response.status_code == status, response.text
        seen.append(response.text)
        return response.json() if response.content else None

    assert check(
        client.put("/api/v1/secrets/WANDB_API_KEY", json={"value": "old"}, headers=alice), 200
    ) == {"name": "WANDB_API_KEY"}
    listed = check(client.get("/api/v1/secrets", headers=alice), 200)
    assert [s["name"] for s in listed] == ["WANDB_API_KEY"]
    assert set(listed[0]) == {"name", "created_at", "updated_at"}
    # Replacing keeps one secret, with the new value and a later `updated_at`.
    assert check(
        client.put("/api/v1/secrets/WANDB_API_KEY", json={"value": VALUE}, headers=alice), 200
    ) == {"name": "WANDB_API_KEY"}
    check(client.put("/api/v1/secrets/HF_TOKEN", json={"value": "hf_x"}, headers=alice), 200)
    listed = check(client.get("/api/v1/secrets", headers=alice), 200)
    assert [s["name"] for s in listed] == ["HF_TOKEN", "WANDB_API_KEY"]
    assert listed[1]["updated_at"] > listed[1]["created_at"]
    assert _read(settings, "alice", "WANDB_API_KEY", "NOT_SET") == {"WANDB_API_KEY": VALUE}
    # In the database the value is ciphertext only.
    rows = dict(_rows(settings))
    assert set(rows) == {"HF_TOKEN", "WANDB_API_KEY"}
    assert VALUE.encode() not in rows["WANDB_API_KEY"] and len(rows["WANDB_API_KEY"]) > len(VALUE)
    check(client.get("/api/v1/openapi.json"), 200)
    check(client.delete("/api/v1/secrets/HF_TOKEN", headers=alice), 204)
    missing = check(client.delete("/api/v1/secrets/HF_TOKEN", headers=alice), 404)
    assert missing["error"]["message"] == "No secret HF_TOKEN."
    assert [s["name"] for s in check(client.get("/api/v1/secrets", headers=alice), 200)] == [
        "WANDB_API_KEY"
    ]
    assert not any(VALUE in text for text in seen)
    assert VALUE not in caplog.text


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("hf_token", {"value": "x"}),
        ("1TOKEN", {"value": "x"}),
        ("HF-TOKEN", {"value": "x"}),
        ("A" * 65, {"value": "x"}),
        ("HF_TOKEN", {"value": ""}),
        ("HF_TOKEN", {"value": "  \n"}),
        ("HF_TOKEN", {"value": "x" * 4097}),
        ("HF_TOKEN", {}),
        ("HF_TOKEN", {"value": "x", "note": "extra"}),
    ],
)
def test_bad_names_and_values_are_422(api, settings, name: str, body: dict[str, str]) -> None:
    client, alice, _ = api
    response = client.put(f"/api/v1/secrets/{name}", json=body, headers=alice)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert _rows(settings) == []


def test_the_longest_name_and_value_are_accepted(api, settings) -> None:
    client, alice, _ = api
    name = "A" + "_9" * 31 + "Z"
    assert len(name) == 64
    response = client.put(f"/api/v1/secrets/{name}", json={"value": "v" * 4096}, headers=alice)
    assert response.status_code == 200, response.text
    assert _read(settings, "alice", name) == {name: "v" * 4096}


def test_another_users_secret_is_theirs_alone(api, settings) -> None:
    client, alice, bob = api
    client.put("/api/v1/secrets/JUDGE_API_KEY", json={"value": VALUE}, headers=alice)
    assert client.get("/api/v1/secrets", headers=bob).json() == []
    refused = client.delete("/api/v1/secrets/JUDGE_API_KEY", headers=bob)
    assert refused.status_code == 404
    assert refused.json()["error"]["message"] == "No secret JUDGE_API_KEY."
    # The same name is Bob's own secret: it neither reads nor replaces Alice's.
    assert _read(settings, "bob", "JUDGE_API_KEY") == {}
    client.put("/api/v1/secrets/JUDGE_API_KEY", json={"value": "bob's"}, headers=bob)
    assert _read(settings, "bob", "JUDGE_API_KEY") == {"JUDGE_API_KEY": "bob's"}
    assert _read(settings, "alice", "JUDGE_API_KEY") == {"JUDGE_API_KEY": VALUE}


def test_a_changed_server_key_gives_a_clear_error(
    make_client, make_settings: Callable[..., Settings]
) -> None:
    before = make_settings(secret_key="k" * 40)
    client = make_client(auth="local", secret_key="k" * 40)
    alice = bearer(add_user(before, "alice"))
    client.put("/api/v1/secrets/HF_TOKEN", json={"value": VALUE}, headers=alice)
    assert _read(before, "alice", "HF_TOKEN") == {"HF_TOKEN": VALUE}
    with pytest.raises(SecretUnreadable, match=r"secret key .* changed since it was set"):
        _read(make_settings(secret_key="other" * 8), "alice", "HF_TOKEN")


@pytest.mark.surface
def test_cli_reads_the_value_from_a_hidden_prompt_or_the_environment(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    token = add_user(settings, "ada")
    runner = CliRunner()
    with running_server(server_env(settings, run_jobs=False)) as url:
        env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": token, "MY_KEY": "from-the-env"}
        typed = runner.invoke(app, ["secrets", "set", "HF_TOKEN"], input=f"{VALUE}\n", env=env)
        assert typed.exit_code == 0, typed.output
        assert VALUE not in typed.output, "the value must not be echoed"
        assert "Secret HF_TOKEN saved." in typed.output
        from_env = runner.invoke(
            app, ["secrets", "set", "MLFLOW_TRACKING_URI", "--from-env", "MY_KEY"], env=env
        )
        assert from_env.exit_code == 0, from_env.output
        unset = runner.invoke(app, ["secrets", "set", "X", "--from-env", "NOT_THERE"], env=env)
        assert unset.exit_code == 1 and "NOT_THERE is not set" in unset.output
        bad = runner.invoke(app, ["secrets", "set", "bad-name"], input="v\n", env=env)
        assert bad.exit_code == 1 and "is not valid" in bad.output
        listed = runner.invoke(app, ["secrets", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        assert [line.split()[0] for line in listed.output.splitlines()] == [
            "NAME",
            "HF_TOKEN",
            "MLFLOW_TRACKING_URI",
        ]
        deleted = runner.invoke(app, ["secrets", "delete", "HF_TOKEN"], env=env)
        assert deleted.exit_code == 0 and "Secret HF_TOKEN deleted." in deleted.output
        with Client(url, token) as tf:
            assert [s["name"] for s in tf.list_secrets()] == ["MLFLOW_TRACKING_URI"]
    assert _read(settings, "ada", "MLFLOW_TRACKING_URI") == {"MLFLOW_TRACKING_URI": "from-the-env"}
