"""Choosing the executor: the Ray executor refuses, saying why, a configuration it cannot run
jobs with; what jobs ask of a Ray cluster."""

from __future__ import annotations

import sys

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.api.test_training_api import processed_dataset
from tests.conftest import add_user, bearer
from tuneforge.api.app import create_app
from tuneforge.cli import app
from tuneforge.db.repositories.ray_jobs import reserve
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, User
from tuneforge.jobs.executor_check import ExecutorUnavailable, check_executor
from tuneforge.jobs.executors import make_runner
from tuneforge.jobs.queue import claim_next
from tuneforge.jobs.ray_peers import bundle_options
from tuneforge.jobs.ray_runner import RANK_INFIX, actor_name, import_ray, job_of
from tuneforge.jobs.resources import Resources, job_resources
from tuneforge.jobs.runner import LocalRunner

S3 = {"storage_url": "s3://bucket/prefix"}


def test_ray_with_a_store_on_this_machine_only_is_refused(make_settings) -> None:
    settings = make_settings(executor="ray", ray_address="127.0.0.1:6379")
    with pytest.raises(ExecutorUnavailable) as refused:
        check_executor(settings)
    message = str(refused.value)
    assert settings.resolved_storage_url in message and "every Ray node reaches" in message
    assert "TUNEFORGE_STORAGE_URL" in message
    with pytest.raises(ExecutorUnavailable):  # a server that runs jobs does not start
        create_app(make_settings(executor="ray", ray_address="auto", run_jobs=True), ui=False)
    create_app(make_settings(executor="ray", ray_address="auto", run_jobs=False), ui=False)


def test_ray_without_an_address_is_refused(make_settings) -> None:
    with pytest.raises(ExecutorUnavailable, match="TUNEFORGE_RAY_ADDRESS"):
        check_executor(make_settings(executor="ray", **S3))


def test_the_local_executor_is_the_default(make_settings) -> None:
    settings = make_settings()
    check_executor(settings)
    runner = make_runner(settings, make_sessionmaker(make_engine(settings.resolved_database_url)))
    assert isinstance(runner, LocalRunner)


def test_resources_in_words_and_as_ray_options() -> None:
    asked = Resources(cpus=2, gpus=1, memory_gb=24, accelerator="A100")
    assert asked.describe() == "2 CPUs, 1 A100 GPU, 24.0 GB memory"
    assert asked.ray_options() == {
        "num_cpus": 2,
        "num_gpus": 1,
        "memory": 24_000_000_000,
        "accelerator_type": "A100",
    }
    assert Resources(cpus=0.5).describe() == "0.5 CPUs"
    assert Resources(cpus=0.5).ray_options() == {"num_cpus": 0.5, "num_gpus": 0}


def test_a_training_in_several_processes_asks_for_one_bundle_per_process() -> None:
    asked = Resources(cpus=2, gpus=2, memory_gb=24, accelerator="A100")
    share = asked.share(2)
    assert share == Resources(cpus=1, gpus=1, memory_gb=12, accelerator="A100")
    bundle = share.bundle()
    assert bundle == {
        "CPU": 1,
        "GPU": 1,
        "memory": 12_000_000_000,
        "accelerator_type:A100": 0.001,  # what Ray's `accelerator_type` option asks for
    }
    # A rank's actor asks for all of its bundle; the group of a job is its actor's name, and
    # the actors of its ranks are left to the group.
    assert bundle_options(bundle) == {
        "num_cpus": 1,
        "num_gpus": 1,
        "memory": 12_000_000_000,
        "resources": {"accelerator_type:A100": 0.001},
    }
    assert bundle_options(Resources(cpus=1).bundle()) == {"num_cpus": 1, "num_gpus": 0}
    assert job_of(actor_name("abc")) == "abc"
    assert job_of(f"{actor_name('abc')}{RANK_INFIX}1") is None and job_of("other") is None


def _job(session: Session, kind: str, spec: dict[str, object]) -> Job:
    user = session.query(User).filter_by(username="alice").one()
    job = Job(owner_id=user.id, kind=kind, spec=spec, status="queued")
    session.add(job)
    session.flush()
    return job


def test_what_jobs_ask_for(settings) -> None:
    add_user(settings, "alice")
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    train = {"base_model": "tiny-random-gemma3", "dataset_id": "missing"}
    with transaction(factory) as session:
        diagnostic = job_resources(session, settings, _job(session, "diagnostic", {}))
        export = job_resources(session, settings, _job(session, "export", {}))
        fp16 = job_resources(
            session, settings, _job(session, "train", {**train, "precision": "fp16"})
        )
        qlora = job_resources(
            session, settings, _job(session, "train", {**train, "method": "qlora", "devices": 2})
        )
        cpu = job_resources(session, settings, _job(session, "train", train))
        gpu = job_resources(
            session, settings, _job(session, "train", {**train, "devices": 2}), has_gpus=True
        )
        typed = job_resources(
            session, settings, _job(session, "train", {**train, "gpu_type": "L4"})
        )
        export_on_gpus = job_resources(
            session, settings, _job(session, "export", {}), has_gpus=True
        )
    assert diagnostic == Resources(cpus=0.5) and export == Resources(cpus=1)
    assert fp16 == Resources(cpus=1, gpus=1)
    assert qlora == Resources(cpus=2, gpus=2)
    assert cpu == Resources(cpus=1)  # its dataset is gone: no estimate of its memory
    assert gpu == Resources(cpus=2, gpus=2)  # where there are GPUs, a training takes them
    assert export_on_gpus == export
    assert typed == Resources(cpus=1, gpus=1, accelerator="L4")
    assert typed.ray_options() == {"num_cpus": 1, "num_gpus": 1, "accelerator_type": "L4"}


def test_ray_not_installed_is_named(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as without the package
    settings = make_settings(executor="ray", ray_address="auto", **S3)
    with pytest.raises(ExecutorUnavailable, match=r"install the `ray` extra"):
        check_executor(settings)
    with pytest.raises(ExecutorUnavailable, match=r"install the `ray` extra"):
        import_ray()


def test_the_worker_command_refuses_ray_with_a_local_store(settings) -> None:
    env = {
        "TUNEFORGE_DATA_DIR": str(settings.data_dir),
        "TUNEFORGE_DATABASE_URL": settings.resolved_database_url,
        "TUNEFORGE_EXECUTOR": "ray",
        "TUNEFORGE_RAY_ADDRESS": "127.0.0.1:6379",
    }
    result = CliRunner().invoke(app, ["worker"], env=env)
    assert result.exit_code == 2
    assert "every Ray node reaches" in result.output


@pytest.mark.timeout(120)
def test_on_ray_what_this_server_cannot_run_is_a_warning_not_a_refusal(make_client, settings):
    """QLoRA needs a CUDA GPU: a CPU server refuses it for its own workers, but with the Ray
    executor the cluster's nodes decide (the job asks for a GPU and waits for one)."""
    local = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    dataset = processed_dataset(local, alice)
    qlora = {"base_model": "tiny-random-gemma3", "dataset_id": dataset["id"], "method": "qlora"}
    here = local.post("/api/v1/trainings/estimate", json=qlora, headers=alice).json()
    assert here["estimate"]["refusal"].startswith("QLoRA needs a CUDA GPU")
    on_ray = make_client(auth="local", executor="ray", ray_address="127.0.0.1:1", **S3)
    there = on_ray.post("/api/v1/trainings/estimate", json=qlora, headers=alice).json()
    assert there["estimate"]["refusal"] is None
    assert f"On this server: {here['estimate']['refusal']} Jobs run on the Ray cluster" in (
        " ".join(there["estimate"]["messages"])
    )


def test_a_local_worker_leaves_a_job_reserved_for_ray_alone(settings) -> None:
    add_user(settings, "alice")
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        reserved = _job(session, "diagnostic", {}).id
        assert reserve(session, reserved, "ray:tuneforge", {"cpus": 0.5}, "Waiting for Ray.")
        free = _job(session, "diagnostic", {}).id
    with transaction(factory) as session:
        taken = claim_next(session, "host")
        assert taken is not None and taken.id == free and taken.executor == "local"
        assert claim_next(session, "host") is None
        job = session.get(Job, reserved)
        assert job is not None and job.status == "queued" and job.worker_host == "ray:tuneforge"
