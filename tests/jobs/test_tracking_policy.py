"""Where a training run's tracking may report, and with whose keys: a user's MLflow URI is an
endpoint under the endpoint policy (http(s) only for non-administrators, never a `file:` path or a
private address), and the server's own W&B / MLflow keys are lent only where an administrator
allows it. Checked at launch (the train kind's check) and again in the worker."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.jobs.kind import kind_of
from tuneforge.jobs.tracking import prepare_tracking, tracking_secrets
from tuneforge.services import accounts
from tuneforge.services.secrets import set_secret
from tuneforge.settings import Settings
from tuneforge.training.spec import SFTSpec

MLFLOW = SFTSpec(base_model="tiny-random-gemma3", dataset_id="d", tracking=["mlflow"])
WANDB = SFTSpec(base_model="tiny-random-gemma3", dataset_id="d", tracking=["wandb"])


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    with transaction(make_sessionmaker(make_engine(settings.resolved_database_url))) as session:
        yield session


def _user(
    session: Session, settings: Settings, name: str, admin: bool = False, **secrets: str
) -> User:
    user = accounts.create_user(session, name, f"password-{name}", is_admin=admin)
    for key, value in secrets.items():
        set_secret(session, settings, user, key, value)
    return user


@pytest.mark.parametrize(
    "uri", ["file:///tmp/mlruns", "/srv/tuneforge/mlruns", "sqlite:///runs.db", "databricks"]
)
def test_a_users_mlflow_uri_must_be_an_http_address(
    session: Session, settings: Settings, uri: str
) -> None:
    alice = _user(session, settings, "alice", MLFLOW_TRACKING_URI=uri)
    root = _user(session, settings, "root", admin=True, MLFLOW_TRACKING_URI=uri)
    with pytest.raises(InvalidInput, match="only administrators may use anything but the http"):
        tracking_secrets(session, alice, settings, MLFLOW)
    assert tracking_secrets(session, root, settings, MLFLOW) == {"MLFLOW_TRACKING_URI": uri}


def test_a_users_mlflow_uri_is_under_the_endpoint_policy(
    session: Session, settings: Settings
) -> None:
    private = "http://tracker:pa55word@127.0.0.1:5000/api"
    alice = _user(session, settings, "alice", MLFLOW_TRACKING_URI=private)
    with pytest.raises(InvalidInput, match=r"reaches 127\.0\.0\.1") as refused:
        tracking_secrets(session, alice, settings, MLFLOW)
    assert "pa55word" not in refused.value.message  # the URI's login is never repeated
    bob = _user(session, settings, "bob", MLFLOW_TRACKING_URI="https://8.8.8.8/mlflow")
    assert tracking_secrets(session, bob, settings, MLFLOW)


def test_the_train_kind_refuses_a_file_uri_at_launch(session: Session, settings: Settings) -> None:
    alice = _user(session, settings, "alice", MLFLOW_TRACKING_URI="file:///etc/cron.d")
    with pytest.raises(InvalidInput, match="MLflow tracking URI"):
        kind_of("train").check(session, alice, settings, MLFLOW)


def test_the_servers_keys_are_lent_only_where_allowed(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "the-servers-key")
    alice = _user(session, settings, "alice")
    with pytest.raises(InvalidInput, match="needs your own WANDB_API_KEY secret"):
        tracking_secrets(session, alice, settings, WANDB)
    with pytest.raises(InvalidInput, match="needs your own WANDB_API_KEY secret"):
        prepare_tracking(session, alice, settings, WANDB)
    lending = settings.model_copy(update={"tracking_server_credentials": True})
    assert tracking_secrets(session, alice, lending, WANDB) == {}
    assert prepare_tracking(session, alice, lending, WANDB) == {"WANDB_API_KEY": "the-servers-key"}
    bob = _user(session, settings, "bob", WANDB_API_KEY="bobs-key")
    assert prepare_tracking(session, bob, lending, WANDB) == {"WANDB_API_KEY": "bobs-key"}


def test_the_servers_mlflow_login_never_goes_to_a_users_uri(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "the-servers-token")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    alice = _user(session, settings, "alice", MLFLOW_TRACKING_URI="https://8.8.8.8/mlflow")
    lending = settings.model_copy(update={"tracking_server_credentials": True})
    keys = prepare_tracking(session, alice, lending, MLFLOW)
    assert keys == {"MLFLOW_TRACKING_URI": "https://8.8.8.8/mlflow"}
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ
