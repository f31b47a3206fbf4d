"""A local Ray head for the Ray executor's tests (on loopback, with two CPUs and no GPU; one per
test file, stopped after it, so that no idle cluster shares the cores with the tests after it),
and the settings that run jobs on it with artifacts in a moto S3 bucket."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

HEAD_START_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a Ray process started in a process group of its own: SIGTERM to the group, SIGKILL
    after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _ray_environment() -> dict[str, str]:
    """What the head and its worker processes (the jobs' actors) run with: no usage reports,
    and an S3 client that reads no credentials of this machine's (the settings carry the
    bucket's)."""
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """The address of a Ray head started for these tests (and stopped after them); this test
    process is connected to it."""
    try:
        import ray
    except ImportError:
        pytest.fail("Ray is not installed; it is in the dev extra: pip install -e '.[dev]'")
    temp = Path(tempfile.mkdtemp(prefix="tfray-"))  # short: Ray's sockets live under it
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--num-gpus=0",
        "--object-store-memory=200000000",
        "--include-dashboard=false",
        # Ports of its own, beside any Ray this machine runs (the defaults are fixed numbers).
        f"--dashboard-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    with open(temp / "head.log", "wb") as out:
        head = subprocess.Popen(
            command,
            env=_ray_environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEAD_START_SECONDS
        while True:
            if head.poll() is not None:
                pytest.fail(f"ray start failed: {(temp / 'head.log').read_text()[-2000:]}")
            with contextlib.suppress(ConnectionError, OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        ray.init(address=address, namespace="tuneforge-tests", log_to_driver=False)
        yield address
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        stop_group(head, grace=5)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def s3_storage(moto_endpoint: str) -> dict[str, Any]:
    """Settings of an artifact store in a fresh bucket of the moto S3 server."""
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"tf-{uuid.uuid4().hex}"
    client.create_bucket(Bucket=bucket)
    return {
        "storage_url": f"s3://{bucket}/root",
        "storage_options": {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
            "skip_instance_cache": True,
            "use_listings_cache": False,
        },
    }


@pytest.fixture
def on_ray(ray_head: str, s3_storage: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Settings overrides that run jobs on the test head, in a namespace of the test's own
    (whose actors are ended after it), with artifacts on S3."""
    import ray

    namespace = f"tftest-{uuid.uuid4().hex[:10]}"
    yield {"executor": "ray", "ray_address": ray_head, "ray_namespace": namespace, **s3_storage}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == namespace:
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(entry["name"], namespace=namespace))
