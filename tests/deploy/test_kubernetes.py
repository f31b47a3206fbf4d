"""deploy/kubernetes: the manifests parse, the kustomizations list files that exist, probes ask the
health endpoint on the container's port, and every container runs as a non-root user."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import manifests

OBJECTS = list(manifests.kubernetes_objects())
BY_NAME = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in OBJECTS}


def test_every_yaml_file_parses_and_every_object_is_named() -> None:
    files = sorted(manifests.KUBERNETES.rglob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert documents, path
        for document in documents:
            assert isinstance(document, dict), path
            if path.name in ("kustomization.yaml", "kustomizeconfig.yaml"):
                continue
            assert document.get("apiVersion") and document.get("kind"), path
            assert document["metadata"]["name"], path


def test_kustomizations_list_files_that_exist_and_every_manifest_is_listed() -> None:
    listed: set[Path] = set()
    for kustomization in manifests.kustomizations():
        loaded = manifests.load_kustomization(kustomization)
        assert loaded["kind"] == "Kustomization"
        for entry in loaded.get("resources", []) + loaded.get("configurations", []):
            path = (kustomization.parent / entry).resolve()
            assert path.exists(), f"{kustomization}: {entry}"
            if path.is_dir():
                assert (path / "kustomization.yaml").is_file(), entry
            else:
                listed.add(path)
        for generator in loaded.get("secretGenerator", []):
            for env in generator.get("envs", []):
                # secret.env holds the real secrets and is never committed: its example is.
                example = kustomization.parent / f"{env}.example"
                assert example.is_file(), example
                ignored = (kustomization.parent / ".gitignore").read_text().split()
                assert env in ignored
        listed.add(kustomization.resolve())
    every = {path.resolve() for path in manifests.KUBERNETES.rglob("*.yaml")}
    assert every == listed, f"manifests no kustomization uses: {every - listed}"


def test_the_base_has_what_a_deployment_needs() -> None:
    kinds = {kind for kind, _ in BY_NAME}
    assert {"Namespace", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"} <= kinds
    base = manifests.load_kustomization(manifests.KUBERNETES / "base" / "kustomization.yaml")
    assert base["secretGenerator"][0]["name"] == "tuneforge-secrets"
    secret_keys = set(manifests.env_file(manifests.SECRET_ENV_EXAMPLE))
    assert {"TUNEFORGE_SECRET_KEY", "TUNEFORGE_DATABASE_URL"} <= secret_keys
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= secret_keys
    # No secret sits in the ConfigMap, which anyone who may read the namespace's config can read.
    config = BY_NAME["ConfigMap", "tuneforge-config"]["data"]
    assert not secret_keys & set(config)
    assert not any(word in key for key in config for word in ("SECRET", "PASSWORD", "KEY_ID"))


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for pod in manifests.pod_specs(document) for c in pod.get("containers", [])]


WORKLOADS = [
    (kind, name) for (kind, name), doc in BY_NAME.items() if list(manifests.pod_specs(doc))
]


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_containers_run_as_non_root(kind: str, name: str) -> None:
    for pod in manifests.pod_specs(BY_NAME[kind, name]):
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] >= 1000 and context["runAsGroup"] >= 1000
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container.get("securityContext", {}).get("runAsUser", 1000) != 0
            assert container["image"] == "tuneforge"  # set by the kustomization's `images`
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                assert ref["name"] in ("tuneforge-config", "tuneforge-secrets")


def test_the_studio_probes_the_health_endpoint_on_its_port() -> None:
    deployment = BY_NAME["Deployment", "tuneforge-studio"]
    (studio,) = containers(deployment)
    ports = {port["name"]: port["containerPort"] for port in studio["ports"]}
    env = {item["name"]: item["value"] for item in studio["env"]}
    assert ports["http"] == int(env["TUNEFORGE_PORT"])
    assert env["TUNEFORGE_RUN_JOBS"] == "false"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = studio[probe]["httpGet"]
        assert get["path"] == "/api/v1/health", probe
        assert get["port"] in ("http", ports["http"]), probe
    assert studio["command"] == ["tini", "--", "tuneforge", "serve"]
    service = BY_NAME["Service", "tuneforge-studio"]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in BY_NAME
    assert {"mountPath": "/data", "name": "data"} in studio["volumeMounts"]


def test_the_worker_runs_jobs_once_the_studio_is_healthy() -> None:
    deployment = BY_NAME["Deployment", "tuneforge-worker"]
    (worker,) = containers(deployment)
    assert worker["command"] == ["tini", "--", "tuneforge", "worker"]
    assert "livenessProbe" not in worker  # it serves no HTTP
    (wait,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert wait["image"] == "tuneforge"
    assert wait["command"][:2] == ["python", "/opt/tuneforge/healthcheck.py"]
    service = BY_NAME["Service", "tuneforge-studio"]
    port = service["spec"]["ports"][0]["port"]
    host = service["metadata"]["name"] + ("" if port == 80 else f":{port}")
    assert wait["command"][-1] == f"http://{host}/api/v1/health"
    assert wait["securityContext"]["allowPrivilegeEscalation"] is False


def ray_patches() -> list[dict[str, Any]]:
    overlay = manifests.load_kustomization(manifests.KUBERNETES / "ray" / "kustomization.yaml")
    patches: list[dict[str, Any]] = overlay["patches"]
    return patches


def test_the_ray_overlay_sends_jobs_to_its_ray_cluster() -> None:
    patches = {p["target"]["name"]: yaml.safe_load(p["patch"]) for p in ray_patches()}
    config = {op["path"]: op["value"] for op in patches["tuneforge-config"]}
    assert config["/data/TUNEFORGE_EXECUTOR"] == "ray"
    assert config["/data/TUNEFORGE_RAY_ADDRESS"] == "auto"
    command = next(op for op in patches["tuneforge-worker"] if op["path"].endswith("/command"))
    script = command["value"][-1]
    cluster = BY_NAME["RayCluster", "tuneforge-ray"]
    assert f"--address={cluster['metadata']['name']}-head-svc:6379" in script
    assert "--num-cpus=0" in script and script.endswith("&& exec tuneforge worker")
    base = manifests.load_kustomization(manifests.KUBERNETES / "base" / "kustomization.yaml")
    overlay = manifests.load_kustomization(manifests.KUBERNETES / "ray" / "kustomization.yaml")
    assert overlay["images"] == base["images"]  # the Ray nodes run the studio's image


def render(directory: str, tmp_path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a copy of deploy/kubernetes with secret.env made from its
    example."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(manifests.KUBERNETES, copy)
    shutil.copy(copy / "base" / "secret.env.example", copy / "base" / "secret.env")
    kubectl = shutil.which("kubectl")
    assert kubectl
    result = subprocess.run(
        [kubectl, "kustomize", str(copy / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl (its kustomize) is not installed")
@pytest.mark.parametrize("directory", ["base", "ray"])
def test_kustomize_renders_every_object_in_the_namespace(directory: str, tmp_path: Path) -> None:
    rendered = render(directory, tmp_path)
    kinds = {doc["kind"] for doc in rendered}
    assert {"Secret", "ConfigMap", "Deployment", "Service"} <= kinds
    for document in rendered:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "tuneforge", document["metadata"]
        for container in containers(document):
            assert container["image"] == "registry.example.com/tuneforge:cpu"
    secret = next(doc for doc in rendered if doc["kind"] == "Secret")
    assert secret["metadata"]["name"] == "tuneforge-secrets"
    assert set(secret["data"]) == set(manifests.env_file(manifests.SECRET_ENV_EXAMPLE))
    if directory == "ray":
        config = next(doc for doc in rendered if doc["kind"] == "ConfigMap")["data"]
        assert config["TUNEFORGE_EXECUTOR"] == "ray"
        assert any(doc["kind"] == "RayCluster" for doc in rendered)
