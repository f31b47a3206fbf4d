"""Jobs on a Ray cluster (a local head, `conftest.py`) with artifacts on a moto S3 store: the
diagnostic, a tiny training and its export run in actors; a killed actor fails its job with the
reason long before the heartbeat timeout, and its training resumes with continuous steps; a
cancel stops a job; a job that asks for a GPU the cluster lacks waits, says so, and is not lost;
a restarted server adopts running actors by name."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile
from typing import Any

import psutil
import pytest

from tests.api.test_jobs_api import wait_status
from tests.api.test_training_api import processed_dataset, spec, start_and_reach
from tests.conftest import add_user
from tests.jobs.test_restart import worker_pid
from tuneforge.db.repositories.ray_jobs import reserve
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, User
from tuneforge.jobs.ray_runner import MISSING_GRACE, RayRunner, actor_name
from tuneforge.jobs.states import transition
from tuneforge.jobs.status import JobStatus
from tuneforge.storage import ArtifactStore

# About two minutes of a Ray cluster's work, on SQLite and on PostgreSQL (CI's two passes).
pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
NOBODY: dict[str, str] = {}  # auth "none": every request is the local administrator's


def diagnostic(client, seconds: float) -> str:
    response = client.post(
        "/api/v1/jobs", json={"kind": "diagnostic", "spec": {"seconds": seconds}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait(client, job_id: str, check, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if check(job):
            return dict(job)
        assert time.monotonic() < deadline, f"job is still {job['status']}: {job['error']}"
        time.sleep(0.2)


def test_a_diagnostic_job_runs_in_a_ray_actor(make_client, on_ray) -> None:
    import ray

    client = make_client(run_jobs=True, **on_ray)
    job_id = diagnostic(client, 1)
    done = wait_status(client, job_id, NOBODY, "succeeded", timeout=90)
    assert done["executor"] == "ray"
    assert done["node"] in {node["NodeManagerAddress"] for node in ray.nodes()}
    assert done["resources"] == {"cpus": 0.5, "gpus": 0.0, "memory_gb": None, "accelerator": None}
    settings = client.app.state.settings
    store = ArtifactStore(settings.resolved_storage_url, settings.storage_options)
    (key,) = [k for k in store.list() if k.endswith(f"/{job_id}/report.json")]
    report = json.loads(store.read_bytes(key))
    assert report["ticks"] == 1 and report["pid"] != os.getpid()  # ran in a Ray worker


def test_a_killed_actor_fails_its_job_and_a_cancelled_one_stops(make_client, on_ray) -> None:
    import ray

    client = make_client(run_jobs=True, **on_ray)  # heartbeat timeout: 30 s
    killed = diagnostic(client, 120)
    wait(client, killed, lambda j: j["status"] == "running" and j["progress"] > 0)
    started = time.monotonic()
    ray.kill(ray.get_actor(actor_name(killed), namespace=on_ray["ray_namespace"]))
    failed = wait(client, killed, lambda j: j["status"] == "failed", timeout=20)
    assert failed["error"].startswith("worker lost: Ray actor died: "), failed["error"]
    assert time.monotonic() - started < 15  # Ray said so, long before the heartbeat timeout

    cancelled = diagnostic(client, 120)
    wait(client, cancelled, lambda j: j["status"] == "running" and j["progress"] > 0)
    assert client.post(f"/api/v1/jobs/{cancelled}/cancel").json()["status"] == "cancelling"
    stopped = wait(client, cancelled, lambda j: j["status"] == "cancelled", timeout=20)
    assert stopped["error"] == "cancelled on request"  # as a local worker says
    # The actors of both are ended.
    deadline = time.monotonic() + 20
    names = {actor_name(killed), actor_name(cancelled)}
    while names & {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}:
        assert time.monotonic() < deadline, "the actors of finished jobs are still there"
        time.sleep(0.3)


def test_a_training_and_its_export_run_on_ray(make_client, on_ray) -> None:
    client = make_client(run_jobs=True, **on_ray)
    dataset = processed_dataset(client, NOBODY)
    created = client.post(
        "/api/v1/jobs", json={"kind": "train", "spec": spec(dataset["id"], max_steps=4)}
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    done = wait_status(client, job_id, NOBODY, "succeeded", timeout=180)
    assert done["executor"] == "ray" and done["result"]["steps"] == 4
    resources = done["resources"]
    assert resources["cpus"] == 1 and resources["gpus"] == 0 and resources["memory_gb"] > 0
    model_id = done["result"]["model_id"]
    export = client.post(f"/api/v1/models/{model_id}/exports", json={"format": "adapter"})
    assert export.status_code in (200, 201), export.text
    record = export.json()
    deadline = time.monotonic() + 120
    while record["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the export did not end"
        time.sleep(0.3)
        record = client.get(f"/api/v1/exports/{record['id']}").json()
    assert record["status"] == "succeeded", record
    downloaded = client.get(f"/api/v1/exports/{record['id']}/download")
    assert downloaded.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(downloaded.content)).namelist()
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(names), names


@pytest.mark.timeout(300)
def test_a_training_killed_on_ray_resumes_with_continuous_steps(make_client, on_ray) -> None:
    client = make_client(run_jobs=True, **on_ray)
    dataset = processed_dataset(client, NOBODY)
    run = spec(dataset["id"], max_steps=16, eval_every=0, checkpoint_every=4)
    job_id = start_and_reach(client, NOBODY, run, step=6)
    pid = worker_pid(client.app.state.settings, job_id)
    assert "ray" in " ".join(psutil.Process(pid).cmdline()).lower()  # the actor's process
    os.kill(pid, signal.SIGKILL)
    failed = wait_status(client, job_id, NOBODY, "failed", timeout=20)
    assert failed["error"].startswith("worker lost: Ray actor died: "), failed["error"]
    resumed = client.post(f"/api/v1/jobs/{job_id}/resume")
    assert resumed.status_code == 200, resumed.text
    done = wait_status(client, job_id, NOBODY, "succeeded", timeout=180)
    assert done["attempt"] == 1 and done["result"]["steps"] == 16 and done["executor"] == "ray"
    loss = client.get(f"/api/v1/jobs/{job_id}/metrics").json()["series"]["loss"]
    assert [s for s, _ in loss] == list(range(1, 17))


def _runner(make_settings, on_ray, **overrides: Any) -> tuple[RayRunner, Any]:
    settings = make_settings(**on_ray, **overrides)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    return RayRunner(settings, factory), factory


def _queue(factory, owner: str, kind: str, job_spec: dict[str, Any]) -> str:
    with transaction(factory) as session:
        user = session.query(User).filter_by(username=owner).one()
        job = Job(owner_id=user.id, kind=kind, spec=job_spec, status="queued")
        session.add(job)
        session.flush()
        return job.id


def _ticks(runner: RayRunner, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runner.tick()
        time.sleep(0.2)


def test_a_job_asking_for_a_gpu_waits_for_it_and_is_not_lost(
    make_settings, settings, on_ray
) -> None:
    import ray

    add_user(settings, "alice")
    runner, factory = _runner(make_settings, on_ray, heartbeat_timeout=1.0)
    fp16 = {"base_model": "tiny-random-gemma3", "dataset_id": "d", "precision": "fp16"}
    job_id = _queue(factory, "alice", "train", fp16)
    _ticks(runner, 3.0)  # three heartbeat timeouts
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "queued" and job.executor == "ray"
        assert job.resources == {"cpus": 1.0, "gpus": 1.0, "memory_gb": None, "accelerator": None}
        assert job.waiting == (
            "Waiting for the Ray cluster to start it: 1 CPU, 1 GPU (its nodes have 0 GPUs now)."
        )
    ray.get_actor(actor_name(job_id), namespace=on_ray["ray_namespace"])  # created, pending
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        transition(session, job, JobStatus.CANCELLED, error="cancelled by the user")
    _ticks(runner, 3.0)
    with pytest.raises(ValueError):  # its actor is ended with it
        ray.get_actor(actor_name(job_id), namespace=on_ray["ray_namespace"])


def test_a_restarted_runner_adopts_a_running_actor(make_settings, settings, on_ray) -> None:
    import ray

    add_user(settings, "alice", admin=True)
    first, factory = _runner(make_settings, on_ray, heartbeat_timeout=120.0)
    job_id = _queue(factory, "alice", "diagnostic", {"seconds": 120})
    deadline = time.monotonic() + 60
    while True:
        first.tick()
        with transaction(factory) as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.status == "running" and job.progress > 0:
                break
        assert time.monotonic() < deadline, f"job is still {job.status}"
        time.sleep(0.2)
    second, _ = _runner(make_settings, on_ray, heartbeat_timeout=120.0)  # a new server
    second.tick()
    ray.kill(ray.get_actor(actor_name(job_id), namespace=on_ray["ray_namespace"]))
    _ticks(second, 3.0)
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed"
        assert job.error is not None and job.error.startswith("worker lost: Ray actor died: ")


def test_an_actor_ends_itself_once_its_job_is_settled(make_settings, settings, on_ray) -> None:
    import ray

    add_user(settings, "alice", admin=True)
    runner, factory = _runner(make_settings, on_ray)
    job_id = _queue(factory, "alice", "diagnostic", {"seconds": 1})
    deadline = time.monotonic() + 60
    while True:  # until its actor has started it; then no runner looks after it any more
        runner.tick()
        with transaction(factory) as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.status != "queued":
                break
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:
        try:
            ray.get_actor(actor_name(job_id), namespace=on_ray["ray_namespace"])
        except ValueError:
            break
        assert time.monotonic() < deadline, "the actor of a settled job is still there"
        time.sleep(0.3)
    with transaction(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded", job.error


def test_a_reserved_job_without_an_actor_goes_back_to_the_queue(
    make_settings, settings, on_ray
) -> None:
    add_user(settings, "alice", admin=True)
    runner, factory = _runner(make_settings, on_ray)
    job_id = _queue(factory, "alice", "diagnostic", {"seconds": 0})
    with transaction(factory) as session:  # a runner reserved it, then stopped before its actor
        assert reserve(session, job_id, runner.tag, {"cpus": 0.5}, "waiting for the Ray cluster")
    started = time.monotonic()
    deadline = started + 90
    while True:
        runner.tick()
        with transaction(factory) as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.status == "succeeded":
                break
        assert time.monotonic() < deadline, f"job is still {job.status}: {job.waiting}"
        time.sleep(0.2)
    assert time.monotonic() - started >= MISSING_GRACE  # not taken from a runner creating it
