"""Where a training run's tracking (Weights & Biases, MLflow) may report, and with whose keys.

A run reports with its owner's secrets: `WANDB_API_KEY`, `MLFLOW_TRACKING_URI`. The server's own
(its environment's) are lent only where an administrator allows it
(`tracking_server_credentials`); otherwise a run that asks for tracking without the owner's
secret is refused at launch. A user's MLflow URI is an endpoint like a judge's: a
non-administrator's must be an http(s) address under the endpoint policy (`jobs/endpoints.py`),
never a `file:` path or another scheme that writes where the worker can. The check runs at launch
and again in the worker, just before the run starts reporting.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.jobs.endpoints import check_endpoint, confirm_endpoint
from tuneforge.settings import Settings
from tuneforge.training.spec import TrainingBase

#: The secret each tracker needs, and the tracker's name in sentences.
TRACKER_SECRETS = {"wandb": "WANDB_API_KEY", "mlflow": "MLFLOW_TRACKING_URI"}
TRACKER_NAMES = {"wandb": "Weights & Biases", "mlflow": "MLflow"}
#: The server's MLflow login, never sent to a URI the user chose.
MLFLOW_LOGIN = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
)


def tracking_secrets(
    session: Session, user: User, settings: Settings, spec: TrainingBase
) -> dict[str, str]:
    """The owner's secrets the run's trackers use, checked: each tracker has the owner's secret
    (or the server lends its own), and an MLflow URI is one `user` may make the server call."""
    values = secret_values(session, settings, user.id, [TRACKER_SECRETS[t] for t in spec.tracking])
    for tracker in spec.tracking:
        name = TRACKER_SECRETS[tracker]
        if name not in values and not settings.tracking_server_credentials:
            raise InvalidInput(
                f"{TRACKER_NAMES[tracker]} tracking needs your own {name} secret: set it under "
                f"Settings, Secrets (or with `tuneforge secrets set {name}`), or leave "
                f"{tracker} out of tracking.",
                {"fields": ["tracking"]},
            )
    uri = values.get(TRACKER_SECRETS["mlflow"])
    if uri is not None and not user.is_admin:
        scheme = urlsplit(uri).scheme.lower()
        if scheme not in {"http", "https"}:
            raise InvalidInput(
                f"The MLflow tracking URI (your MLFLOW_TRACKING_URI secret) is "
                f"{f'a `{scheme}:` URI' if scheme else 'a local path'}; only administrators may "
                "use anything but the http(s) address of an MLflow server.",
                {"fields": ["tracking"]},
            )
        check_endpoint(_shown(uri), user, settings, "The MLflow tracking URI")
    return values


def prepare_tracking(
    session: Session, user: User, settings: Settings, spec: TrainingBase
) -> dict[str, str]:
    """In the worker, just before the run reports: the keys and URIs its trackers use. The
    owner's are checked again, a user's MLflow URI confirmed at its checked address and the
    server's MLflow login dropped from this process, so that it never goes there; the server's
    own fill in for those the owner has not set where an administrator allows it."""
    values = tracking_secrets(session, user, settings, spec)
    uri = values.get(TRACKER_SECRETS["mlflow"])
    if uri is not None:
        if not user.is_admin:
            confirm_endpoint(_shown(uri), "The MLflow tracking URI")
        for name in MLFLOW_LOGIN:
            os.environ.pop(name, None)
    if settings.tracking_server_credentials:
        for tracker in spec.tracking:
            name = TRACKER_SECRETS[tracker]
            server = os.environ.get(name)
            if name not in values and server:
                values[name] = server
    return values


def _shown(uri: str) -> str:
    """`uri` without the user name, password, path or query it may carry (for checks and
    messages)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: the check finds no usable host either way
        port = ""
    return f"{parts.scheme}://{shown}{port}"
