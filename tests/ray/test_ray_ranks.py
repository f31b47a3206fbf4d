"""A training's ranks across Ray nodes: on a head with a second node beside it (two raylets on
this machine), a two-process LoRA training runs in a placement group whose ranks land on
different nodes and trains exactly as one process with the doubled batch; killing the actor of
rank 1 fails the job with the reason, and the job's group goes with it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_training_api import log_lines, processed_dataset, spec, start_and_reach
from tests.conftest import PG_URL
from tests.ray.conftest import _free_port, _ray_environment, stop_group
from tests.ray.test_ray_executor import wait
from tuneforge.jobs.ray_runner import actor_name

# Three minutes of two Ray nodes' work: CI runs it once, in its PostgreSQL pass (the executor's
# own tests, `test_ray_executor.py`, run in both; CI is at its time budget). On SQLite it runs
# with TUNEFORGE_RAY_TESTS=1.
pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.slow,
    pytest.mark.skipif(
        not PG_URL and not os.environ.get("TUNEFORGE_RAY_TESTS"),
        reason="runs in the PostgreSQL pass (or with TUNEFORGE_RAY_TESTS=1)",
    ),
]
NOBODY: dict[str, str] = {}
#: Exact arithmetic, so that two processes and one give the same numbers.
EXACT = {
    "precision": "fp32",
    "warmup_ratio": 0.0,
    "eval_every": 0,
    "learning_rate": 1e-2,
    "sample_max_new_tokens": 4,
}


@pytest.fixture(scope="module")
def two_nodes(ray_head: str) -> Iterator[str]:
    """The head's address, with a second node of one CPU joined to it, and one of the head's
    two CPUs held: a training of two one-CPU processes must span both nodes."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    import ray

    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        f"--address={ray_head}",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        "--disable-usage-stats",
    ]
    node = subprocess.Popen(
        command,
        env=_ray_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        head = ray.get_runtime_context().get_node_id()
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert node.poll() is None, "the second Ray node did not start"
            assert time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(0.5)
        holder = ray.remote(num_cpus=1)(Holder).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)
        )
        held = holder.remote()
        ray.get(held.ready.remote(), timeout=60)
        yield ray_head
        ray.kill(held)
    finally:
        stop_group(node, grace=10)


class Holder:
    """An actor that holds a CPU of its node."""

    def ready(self) -> bool:
        return True


def settled(client, job_id: str) -> dict[str, Any]:
    return wait(client, job_id, lambda j: j["status"] in {"succeeded", "failed"}, timeout=180)


def _nodes(lines: list[str]) -> list[str]:
    """The Ray nodes the log says the run's processes are on, in the order of the processes."""
    marker = " on Ray node "
    return [line.split(marker)[1].split()[0] for line in lines if marker in line]


def test_two_ranks_on_two_nodes_train_as_one_process_with_the_doubled_batch(
    make_client, on_ray, two_nodes
) -> None:
    import ray

    client = make_client(run_jobs=True, **on_ray)
    dataset = processed_dataset(client, NOBODY)
    runs = {
        devices: client.post(
            "/api/v1/jobs",
            json={
                "kind": "train",
                "spec": spec(dataset["id"], max_steps=4, batch_size=4 // devices, devices=devices)
                | EXACT,
            },
        ).json()["id"]
        for devices in (2, 1)
    }
    done = {d: settled(client, job) for d, job in runs.items()}
    assert {d: (j["status"], j["error"]) for d, j in done.items()} == {
        2: ("succeeded", None),
        1: ("succeeded", None),
    }
    assert done[2]["resources"]["cpus"] == 2 and done[2]["result"]["steps"] == 4
    lines = log_lines(client, runs[2], NOBODY)
    assert any("training in 2 processes (data-parallel) on Ray" in line for line in lines), lines
    nodes = _nodes(lines)
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and len(set(nodes)) == 2 and set(nodes) <= alive, lines
    loss = {
        d: [v for _, v in client.get(f"/api/v1/jobs/{job}/metrics").json()["series"]["loss"]]
        for d, job in runs.items()
    }
    assert len(loss[1]) == 4 and loss[1][-1] < loss[1][0]  # it learns: the curve is no line
    assert loss[2] == pytest.approx(loss[1], rel=1e-4, abs=1e-5)
    deadline = time.monotonic() + 20  # the group ends with its job
    while any(actor_name(runs[2]) == g["name"] and g["state"] != "REMOVED" for g in _groups()):
        assert time.monotonic() < deadline, "the placement group of a finished job is still there"
        time.sleep(0.3)


def _groups() -> list[dict[str, Any]]:
    import ray

    return list(ray.util.placement_group_table().values())


def test_a_killed_rank_fails_its_job_with_the_reason(make_client, on_ray, two_nodes) -> None:
    import ray

    client = make_client(run_jobs=True, **on_ray)
    dataset = processed_dataset(client, NOBODY)
    run = spec(dataset["id"], max_steps=200, batch_size=1, devices=2) | EXACT
    job_id = start_and_reach(client, NOBODY, run, step=2)
    rank = ray.get_actor(f"{actor_name(job_id)}-rank-1", namespace=on_ray["ray_namespace"])
    ray.kill(rank)
    failed = settled(client, job_id)
    assert failed["status"] == "failed" and failed["error"].startswith(
        "RuntimeError: Training process 1 of 2 ended unexpectedly (Ray actor died: "
    ), failed["error"]
    deadline = time.monotonic() + 20
    while any(actor_name(job_id) == g["name"] and g["state"] != "REMOVED" for g in _groups()):
        assert time.monotonic() < deadline, "the placement group of a failed job is still there"
        time.sleep(0.3)
