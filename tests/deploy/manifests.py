"""Reading the deployment recipes in `deploy/` as the tests see them: the Dockerfile's
instructions, the compose file with its `${VAR}` substitutions, the Kubernetes manifests, and every
environment variable any of them sets."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_ENV_EXAMPLE = DEPLOY / "env.example"
KUBERNETES = DEPLOY / "kubernetes"
SECRET_ENV_EXAMPLE = KUBERNETES / "base" / "secret.env.example"

#: Variables the recipes may set that are not TuneForge settings: each is documented by the
#: program that reads it. Anything else must be a `TUNEFORGE_*` setting.
THIRD_PARTY = {
    # botocore / s3fs: the object store's credentials and region.
    "AWS_ACCESS_KEY_ID": "botocore",
    "AWS_SECRET_ACCESS_KEY": "botocore",
    "AWS_DEFAULT_REGION": "botocore",
    # The official PostgreSQL image: the database, user and password it creates.
    "POSTGRES_USER": "postgres image",
    "POSTGRES_DB": "postgres image",
    "POSTGRES_PASSWORD": "postgres image",
    # The MinIO server image (and the bucket one-shot, which logs in with them).
    "MINIO_ROOT_USER": "minio image",
    "MINIO_ROOT_PASSWORD": "minio image",
    # Hugging Face: where hub downloads are cached (in the data volume).
    "HF_HOME": "huggingface_hub",
    # Python, pip, apt and the shell in the image.
    "PATH": "shell",
    "HOME": "shell",
    "PYTHONUNBUFFERED": "python",
    "PIP_NO_CACHE_DIR": "pip",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip",
    "DEBIAN_FRONTEND": "apt",
    # compose.yaml's own substitution: which image variant to build and run (cpu or cuda).
    "IMAGE_VARIANT": "compose.yaml",
}


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str
    where: str  # file and place, for messages


# -- Dockerfile -----------------------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and parser directives
    left out."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, f"the Dockerfile ends inside an instruction: {current!r}"
    return instructions


def dockerfile_env(text: str) -> list[EnvVar]:
    """Every variable an `ENV` instruction sets (the `ENV a=b c=d` form)."""
    found = []
    for keyword, arguments in dockerfile_instructions(text):
        if keyword != "ENV":
            continue
        pairs = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', arguments)
        assert pairs, f"ENV {arguments!r} is not in the `ENV NAME=value` form"
        found += [EnvVar(name, value.strip('"'), f"Dockerfile ENV {name}") for name, value in pairs]
    return found


# -- compose --------------------------------------------------------------------------------------
_SUBSTITUTION = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$)")


def substitutions(text: str) -> set[str]:
    """The names of the `${NAME...}` substitutions in compose text (`$$` is a literal dollar)."""
    return {match.group(1) for match in _SUBSTITUTION.finditer(text) if match.group(1)}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Compose's substitution of `${NAME}`, `${NAME:-default}`, `${NAME:?error}` with `values`;
    a missing required variable raises, with compose's message."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if name is None:
            return "$"
        value = values.get(name, "")
        if operator in (":-", "-"):
            return value if value or (operator == "-" and name in values) else argument
        if (operator == ":?" and not value) or (operator == "?" and name not in values):
            raise KeyError(f"{name}: {argument}")
        return value

    return _SUBSTITUTION.sub(replace, text)


def env_file(path: Path) -> dict[str, str]:
    """A `NAME=value` file (compose's `.env`, kustomize's secret env file), comments left out."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        assert equals, f"{path.name}:{number}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def compose(values: Mapping[str, str]) -> dict[str, Any]:
    """compose.yaml after substitution with `values`, as compose reads it (merge keys resolved)."""
    loaded = yaml.safe_load(substitute(COMPOSE.read_text(), values))
    assert isinstance(loaded, dict)
    return loaded


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, whether written as a mapping or a list."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.partition("=")[::2] for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


# -- Kubernetes -----------------------------------------------------------------------------------
def kustomizations() -> list[Path]:
    return sorted(KUBERNETES.glob("*/kustomization.yaml"))


def load_kustomization(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def kubernetes_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every object of the manifests the kustomizations list, with its file."""
    for kustomization in kustomizations():
        for resource in load_kustomization(kustomization).get("resources", []):
            path = (kustomization.parent / resource).resolve()
            if path.is_dir():
                continue  # another kustomization: its own files are listed there
            for document in yaml.safe_load_all(path.read_text()):
                if document is not None:
                    yield path, document


def pod_specs(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod templates of a workload (a Deployment's, a RayCluster's head and worker groups)."""
    spec = document.get("spec") or {}
    if "template" in spec:
        yield spec["template"]["spec"]
    if "headGroupSpec" in spec:
        yield spec["headGroupSpec"]["template"]["spec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["template"]["spec"]


def kubernetes_env() -> list[EnvVar]:
    """Every variable the manifests give a container: `env` entries, ConfigMap keys (read with
    `envFrom`), the secret env file's keys, and the keys the overlays' patches add."""
    found: list[EnvVar] = []
    for path, document in kubernetes_objects():
        where = f"{path.relative_to(DEPLOY)} {document['kind']} {document['metadata']['name']}"
        if document["kind"] == "ConfigMap":
            found += [EnvVar(k, str(v), where) for k, v in document.get("data", {}).items()]
        for pod in pod_specs(document):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                for item in container.get("env", []):
                    found.append(EnvVar(item["name"], str(item.get("value", "")), where))
    for kustomization in kustomizations():
        for patch in load_kustomization(kustomization).get("patches", []):
            for operation in yaml.safe_load(patch.get("patch", "")) or []:
                if isinstance(operation, dict) and operation["path"].startswith("/data/"):
                    name = operation["path"].removeprefix("/data/")
                    where = f"{kustomization.relative_to(DEPLOY)} patch"
                    found.append(EnvVar(name, str(operation["value"]), where))
    secrets = env_file(SECRET_ENV_EXAMPLE)
    found += [EnvVar(k, v, SECRET_ENV_EXAMPLE.name) for k, v in secrets.items()]
    return found
