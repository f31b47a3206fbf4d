"""The studio started as the compose file configures it (the image's settings, the studio service's
environment; only the hosts are this machine's), the container's health check against it, and the
first administrator made as docs/deployment.md says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.deploy import manifests
from tests.deploy.test_env import compose_values, image_env
from tests.server import free_port, server_process

HEALTHCHECK = manifests.DEPLOY / "healthcheck.py"


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_healthcheck(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, as Docker runs it in the container (`args`: as the
    Kubernetes worker's wait for the studio runs it)."""
    env = {"PATH": os.environ["PATH"], "TUNEFORGE_PORT": port, "NO_PROXY": "127.0.0.1"}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def studio_env(
    tmp_path: Path, database_url: str, models_dir: Path, endpoint: str
) -> dict[str, str]:
    """The studio container's TUNEFORGE_* variables with this machine's database, data directory
    and S3 endpoint in place of the compose network's."""
    service = manifests.compose(compose_values())["services"]["studio"]
    env = {k: v for k, v in image_env().items() if k.startswith("TUNEFORGE_")}
    env |= manifests.service_environment(service)
    options = env["TUNEFORGE_STORAGE_OPTIONS"]
    assert "http://minio:9000" in options
    env |= {
        "TUNEFORGE_DATA_DIR": str(tmp_path / "data"),
        "TUNEFORGE_DATABASE_URL": database_url,
        "TUNEFORGE_STORAGE_OPTIONS": options.replace("http://minio:9000", endpoint),
        "TUNEFORGE_MODEL_CACHE_DIR": str(models_dir),
        "TUNEFORGE_WARM_MODELS": "[]",  # no model loads at start
    }
    return env


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """moto's S3 with the compose file's bucket, and the S3 variables the compose file sets."""
    import boto3

    environment = manifests.compose(compose_values())["services"]["studio"]["environment"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, environment[name])
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="tuneforge")
    yield moto_endpoint
    if "tuneforge" in [bucket["Name"] for bucket in client.list_buckets()["Buckets"]]:
        for item in client.list_objects_v2(Bucket="tuneforge").get("Contents", []):
            client.delete_object(Bucket="tuneforge", Key=item["Key"])
        client.delete_bucket(Bucket="tuneforge")


def test_the_health_check_fails_when_nothing_listens() -> None:
    check: Callable[[str, float], str | None] = healthcheck_module().check
    url = f"http://127.0.0.1:{free_port()}/api/v1/health"
    assert "did not answer" in (check(url, 2.0) or "")  # nothing listens there
    assert "not an http(s) URL" in (check("file:///etc/passwd", 2.0) or "")
    waited = run_healthcheck("7860", "--wait", "1", url)
    assert waited.returncode == 1 and "did not answer" in waited.stderr
    refused = run_healthcheck("7860", "ftp://example")
    assert refused.returncode == 2 and "must start with http://" in refused.stderr


def test_the_compose_studio_starts_and_passes_the_image_health_check(
    tmp_path: Path, database_url: str, models_dir: Path, s3: str
) -> None:
    import boto3

    env = studio_env(tmp_path, database_url, models_dir, s3)
    with server_process(env, timeout=60) as (url, _):
        health = httpx.get(f"{url}/api/v1/health", timeout=10).json()
        assert health["database"] == "ok" and health["storage"] == "ok"
        assert health["runner"] == "external"  # TUNEFORGE_RUN_JOBS=false: the workers run jobs
        port = url.rpartition(":")[2]
        passed = run_healthcheck(port)
        assert passed.returncode == 0, passed.stderr
        assert passed.stdout.strip() == "ok"
        # As the Kubernetes workers wait for the studio (by its URL).
        waited = run_healthcheck("1", "--wait", "30", f"{url}/api/v1/health")
        assert waited.returncode == 0, waited.stderr

        # The first administrator, as docs/deployment.md makes it (`docker compose run --rm studio
        # tuneforge admin create-user alice --admin`), with the same settings.
        made = subprocess.run(
            [sys.executable, "-m", "tuneforge", "admin", "create-user", "alice", "--admin"],
            input="a long password\na long password\n",
            env={k: v for k, v in os.environ.items() if not k.startswith("TUNEFORGE_")} | env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        login = httpx.post(
            f"{url}/api/v1/auth/login",
            json={"username": "alice", "password": "a long password"},
            timeout=10,
        )
        assert login.status_code == 201, login.text
        me = httpx.get(
            f"{url}/api/v1/me",
            headers={"Authorization": f"Bearer {login.json()['token']}"},
            timeout=10,
        )
        assert me.status_code == 200 and me.json()["is_admin"] is True, me.text

        # The store goes away: the check fails, saying why.
        boto3.client("s3", endpoint_url=s3, region_name="us-east-1").delete_bucket(
            Bucket="tuneforge"
        )
        failed = run_healthcheck(port)
        assert failed.returncode == 1
        assert "answered 503" in failed.stderr and "storage" in failed.stderr
