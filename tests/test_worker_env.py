"""A job's worker gets a minimal environment (no secret of the server's) and its settings, which
carry the secret key and the database URL, through a 0600 file it removes once read (a real
worker's: tests/jobs/test_runner.py)."""

from __future__ import annotations

import stat
from pathlib import Path

from tuneforge.settings import Settings
from tuneforge.worker_env import (
    SETTINGS_FILE_ENV,
    read_worker_settings,
    worker_environment,
    write_worker_settings,
)

SERVER_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/tuneforge",
    "LC_ALL": "C.UTF-8",
    "HF_HOME": "/cache/hf",
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "2",
    "CUDA_VISIBLE_DEVICES": "0",
    "TUNEFORGE_SECRET_KEY": "server-secret",
    "TUNEFORGE_DATABASE_URL": "postgresql+psycopg://tf:pw@db/tf",
    "HF_TOKEN": "hf_server",
    "HF_API_KEY": "a-key-named-like-a-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_REGION": "eu-west-1",
    "WANDB_API_KEY": "wandb-server",
    "MLFLOW_TRACKING_URI": "http://mlflow.internal",
    "PGPASSWORD": "pw",
    "SOMETHING_ELSE": "x",
}


def test_the_environment_keeps_what_jobs_need_and_no_secret(settings: Settings) -> None:
    env = worker_environment(settings, Path("/x/settings.json"), SERVER_ENV)
    assert env == {
        SETTINGS_FILE_ENV: "/x/settings.json",
        "PATH": "/usr/bin",
        "HOME": "/home/tuneforge",
        "LC_ALL": "C.UTF-8",
        "HF_HOME": "/cache/hf",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "CUDA_VISIBLE_DEVICES": "0",
        "HF_TOKEN": "hf_server",  # the catalog's gated models download in the worker
        "AWS_REGION": "eu-west-1",
    }


def test_storage_and_lent_tracking_credentials_pass_only_when_needed(settings: Settings) -> None:
    remote = settings.model_copy(update={"storage_url": "s3://artifacts/tuneforge"})
    env = worker_environment(remote, Path("/x"), SERVER_ENV)
    assert env["AWS_SECRET_ACCESS_KEY"] == "aws-secret"
    assert "WANDB_API_KEY" not in env and "HF_API_KEY" not in env
    lending = settings.model_copy(update={"tracking_server_credentials": True})
    env = worker_environment(lending, Path("/x"), SERVER_ENV)
    assert env["WANDB_API_KEY"] == "wandb-server"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.internal"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "TUNEFORGE_SECRET_KEY" not in env


def test_the_settings_file_is_private_and_read_once(settings: Settings) -> None:
    secret = settings.model_copy(update={"secret_key": "k" * 40, "proxy_secret": "gateway"})
    path = write_worker_settings(secret, "job-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    read = read_worker_settings({SETTINGS_FILE_ENV: str(path)})
    assert not path.exists()
    assert read.secret_key == "k" * 40
    assert read.resolved_database_url == settings.resolved_database_url
    assert read.proxy_secret is None  # the gateway's secret is no worker's business
