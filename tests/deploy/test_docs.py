"""docs/deployment.md names the recipes' real files, services and commands."""

from __future__ import annotations

import re

from tests.deploy import manifests
from tests.deploy.test_env import compose_values

DOCS = (manifests.ROOT / "docs" / "deployment.md").read_text()


def test_every_deploy_path_the_guide_names_exists() -> None:
    named = r"deploy/(?:Dockerfile|kubernetes/[\w/]+|[\w./-]+\.(?:yaml|py|example|env))"
    paths = set(re.findall(named, DOCS))
    assert len(paths) >= 6
    for path in paths:
        assert (manifests.ROOT / path).exists(), path


def test_the_guide_covers_each_compose_service_and_secret() -> None:
    services = manifests.compose(compose_values())["services"]
    for name in services:
        assert f"`{name}`" in DOCS or f"{name}=" in DOCS, name
    for name in manifests.env_file(manifests.COMPOSE_ENV_EXAMPLE):
        assert name in DOCS, name
    for name in manifests.env_file(manifests.SECRET_ENV_EXAMPLE):
        assert name in DOCS, name


def test_the_guide_makes_the_first_administrator_with_the_real_command() -> None:
    from typer.testing import CliRunner

    from tuneforge.cli import app

    assert "tuneforge admin create-user alice --admin" in DOCS
    usage = CliRunner().invoke(app, ["admin", "create-user", "--help"])
    assert usage.exit_code == 0 and "--admin" in usage.output


def test_every_setting_the_guide_names_exists() -> None:
    from tuneforge.settings import Settings

    settings = {f"TUNEFORGE_{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(r"TUNEFORGE_[A-Z_]*[A-Z]", DOCS))
    assert len(named) >= 20
    assert named <= settings, named - settings
