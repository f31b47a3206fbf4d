"""A Python client for the TuneForge REST API.

    from tuneforge.client import Client

    with Client.login("http://127.0.0.1:7860", "ada", "a long password") as tf:
        job = tf.create_job("diagnostic", {"seconds": 2})
        for event in tf.events(job.id):
            print(event["type"], event["data"])
        print(tf.wait(job.id).status)

        raw = tf.upload_dataset("qa.csv")           # recognised, with a proposed mapping
        # or: raw = tf.wait_dataset(tf.import_dataset("tatsu-lab/alpaca").id)
        processed = tf.process_dataset(raw.id, {"mapping": raw.mapping})
        processed = tf.wait_dataset(processed.id)   # large data is processed in a job
        print(tf.dataset_report(processed.id).rows_out)

        spec = {"base_model": "gemma-3-270m", "dataset_id": processed.id, "max_steps": 100}
        print(tf.estimate(spec).estimate.duration_seconds)   # before launching
        run = tf.wait(tf.train(spec).id)                      # live: tf.events(run.id)
        print(tf.metrics(run.id).series["loss"][-1], run.result["model_id"])

Failures the server reports raise `ApiError`; a server that cannot be reached raises the
underlying `httpx.TransportError`. The client speaks HTTP only: it never imports the server.

`Client` is one connection (`base.py`) with one part per resource: the account, jobs,
datasets, synthesis from documents, training runs, reward graders, models, chat, evaluations,
exports and secrets, each in its module.
"""

from __future__ import annotations

from tuneforge.client.account import AccountClient
from tuneforge.client.base import API_PREFIX, DEFAULT_URL, WORK_TIMEOUT, ApiError
from tuneforge.client.chat import ChatClient
from tuneforge.client.datasets import DatasetsClient
from tuneforge.client.evaluations import EvaluationsClient
from tuneforge.client.exports import ExportsClient
from tuneforge.client.graders import GradersClient
from tuneforge.client.jobs import END_EVENT
from tuneforge.client.models import ModelsClient
from tuneforge.client.secrets import SecretsClient
from tuneforge.client.synthesis import SynthesisClient
from tuneforge.client.training import TrainingClient

__all__ = ["API_PREFIX", "DEFAULT_URL", "END_EVENT", "WORK_TIMEOUT", "ApiError", "Client"]


class Client(
    AccountClient,
    DatasetsClient,
    TrainingClient,
    GradersClient,
    ModelsClient,
    ChatClient,
    EvaluationsClient,
    ExportsClient,
    SecretsClient,
    SynthesisClient,
):
    """One connection pool to one server, authenticated by an API token (or not, in `none` mode),
    with the methods of every resource."""
