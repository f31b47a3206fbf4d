"""Every environment variable the deployment recipes set is a real TuneForge setting whose value
validates, or a documented third-party variable of an explicit list; and the configurations they
make are ones the studio accepts."""

from __future__ import annotations

import pytest

from tests.deploy import manifests
from tuneforge.settings import Settings

SETTINGS = {f"TUNEFORGE_{name.upper()}" for name in Settings.model_fields}
#: What an operator fills in where an example leaves a secret empty (the test's own values).
FILLED = {
    "TUNEFORGE_SECRET_KEY": "a" * 64,
    "POSTGRES_PASSWORD": "postgres-password",
    "MINIO_ROOT_PASSWORD": "minio-password",
    "AWS_ACCESS_KEY_ID": "access-key",
    "AWS_SECRET_ACCESS_KEY": "secret-access-key",
}


def compose_values() -> dict[str, str]:
    """deploy/env.example as an operator fills it in."""
    values = manifests.env_file(manifests.COMPOSE_ENV_EXAMPLE)
    return {name: value or FILLED[name] for name, value in values.items()}


def every_variable() -> list[manifests.EnvVar]:
    found = manifests.dockerfile_env(manifests.DOCKERFILE.read_text())
    for name, service in manifests.compose(compose_values())["services"].items():
        for key, value in manifests.service_environment(service).items():
            found.append(manifests.EnvVar(key, value, f"compose.yaml service {name}"))
    text = manifests.COMPOSE.read_text()
    found += [manifests.EnvVar(n, "", "compose.yaml ${...}") for n in manifests.substitutions(text)]
    for name, value in manifests.env_file(manifests.COMPOSE_ENV_EXAMPLE).items():
        found.append(manifests.EnvVar(name, value, "env.example"))
    return found + manifests.kubernetes_env()


def settings_from(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    """Settings as a process with exactly `environment`'s TUNEFORGE_* variables reads them."""
    import os

    for name in list(os.environ):
        if name.startswith("TUNEFORGE_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        if name.startswith("TUNEFORGE_"):
            monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_the_recipes_set_variables_at_all() -> None:
    names = {var.name for var in every_variable()}
    # A parser that found nothing would pass every check below.
    assert {"TUNEFORGE_DATA_DIR", "TUNEFORGE_RUN_JOBS", "TUNEFORGE_EXECUTOR"} <= names
    assert {"TUNEFORGE_SECRET_KEY", "TUNEFORGE_DATABASE_URL", "AWS_ACCESS_KEY_ID"} <= names


def test_every_variable_is_a_setting_or_an_allowed_third_party_one() -> None:
    unknown = [
        f"{var.name} ({var.where})"
        for var in every_variable()
        if var.name not in SETTINGS and var.name not in manifests.THIRD_PARTY
    ]
    assert not unknown, f"not TuneForge settings nor in THIRD_PARTY: {unknown}"
    shadowing = [name for name in manifests.THIRD_PARTY if name.startswith("TUNEFORGE_")]
    assert not shadowing


def test_every_setting_value_validates_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = 0
    for var in every_variable():
        if var.name not in SETTINGS or not var.value:
            continue  # empty: a placeholder an operator fills in (the tests below fill them)
        settings_from(monkeypatch, {var.name: var.value})
        checked += 1
    assert checked >= 15


def test_a_bad_value_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    with pytest.raises(SettingsError):
        settings_from(monkeypatch, {"TUNEFORGE_STORAGE_OPTIONS": "{not json"})
    with pytest.raises(ValidationError):
        settings_from(monkeypatch, {"TUNEFORGE_EXECUTOR": "slurm"})


def image_env() -> dict[str, str]:
    return {v.name: v.value for v in manifests.dockerfile_env(manifests.DOCKERFILE.read_text())}


def test_compose_studio_and_workers_make_a_safe_shared_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = manifests.compose(compose_values())["services"]
    made = {}
    for name in ("studio", "worker", "ray-head", "ray-node", "ray-worker"):
        environment = image_env() | manifests.service_environment(services[name])
        made[name] = settings_from(monkeypatch, environment)
    studio = made["studio"]
    studio.check_safe()  # a non-loopback bind with local auth and a secret key: it starts
    assert studio.host == "0.0.0.0" and studio.auth_mode == "local"
    assert studio.run_jobs is False
    assert studio.resolved_database_url.startswith("postgresql+psycopg://tuneforge:")
    assert studio.resolved_storage_url == "s3://tuneforge/artifacts"
    assert studio.storage_options == {"client_kwargs": {"endpoint_url": "http://minio:9000"}}
    for name, settings in made.items():
        # Everyone reads one database and one store with one key, or jobs and secrets break.
        assert settings.resolved_database_url == studio.resolved_database_url, name
        assert settings.resolved_storage_url == studio.resolved_storage_url, name
        assert settings.secret_key == studio.secret_key == FILLED["TUNEFORGE_SECRET_KEY"], name
    assert made["worker"].executor == "local"
    assert made["ray-worker"].executor == "ray"
    assert made["ray-worker"].ray_address == "auto"


def test_compose_refuses_to_start_without_the_secrets() -> None:
    values = compose_values()
    for required in ("TUNEFORGE_SECRET_KEY", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        with pytest.raises(KeyError, match=required):
            manifests.compose({k: v for k, v in values.items() if k != required})


def test_kubernetes_studio_makes_a_safe_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = {
        (doc["kind"], doc["metadata"]["name"]): doc for _, doc in manifests.kubernetes_objects()
    }
    config = objects["ConfigMap", "tuneforge-config"]["data"]
    secrets = manifests.env_file(manifests.SECRET_ENV_EXAMPLE)
    secrets = {name: value or FILLED[name] for name, value in secrets.items()}
    shared = image_env() | config | secrets
    for component in ("studio", "worker"):
        deployment = objects["Deployment", f"tuneforge-{component}"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        environment = shared | {item["name"]: item["value"] for item in container.get("env", [])}
        settings = settings_from(monkeypatch, environment)
        assert settings.resolved_storage_url.startswith("s3://"), component
        assert settings.resolved_database_url.startswith("postgresql+psycopg://"), component
        if component == "studio":
            settings.check_safe()
            assert settings.run_jobs is False
            assert settings.port == container["ports"][0]["containerPort"]
