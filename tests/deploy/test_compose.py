"""deploy/compose.yaml: its services, images, dependencies and profiles hang together."""

from __future__ import annotations

from typing import Any

from tests.deploy import manifests
from tests.deploy.test_env import compose_values

COMPOSE = manifests.compose(compose_values())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
TUNEFORGE = ("studio", "worker", "ray-head", "ray-node", "ray-worker")


def command(name: str) -> str:
    value = SERVICES[name]["command"]
    return " ".join(value) if isinstance(value, list) else value


def test_every_service_has_an_image_or_a_build_that_exists() -> None:
    assert {"studio", "worker", "postgres", "minio", "create-bucket"} <= set(SERVICES)
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build:
            context = (manifests.DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
            assert context == manifests.ROOT
            assert build["args"]["VARIANT"] in ("cpu", "cuda")
        image = service["image"]
        # Third-party images are pinned to a tag (a release, not `latest`).
        tag = image.rpartition(":")[2]
        assert ":" in image and tag and tag != "latest", f"{name}: {image}"


def test_tuneforge_services_share_one_image_and_volume() -> None:
    images = {SERVICES[name]["image"] for name in TUNEFORGE}
    assert images == {"tuneforge:cpu"}
    for name in TUNEFORGE:
        assert "tuneforge-data:/data" in SERVICES[name]["volumes"], name
    assert set(COMPOSE["volumes"]) >= {"tuneforge-data", "postgres-data", "minio-data"}


def test_depends_on_names_existing_services_with_valid_conditions() -> None:
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        items = {key: {} for key in depends} if isinstance(depends, list) else depends
        for other, options in items.items():
            assert other in SERVICES, f"{name} depends on missing {other}"
            assert other != name
            condition = (options or {}).get("condition", "service_started")
            assert condition in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            ), condition
            if condition == "service_healthy":
                # Its own check, or the image's HEALTHCHECK (the studio), not turned off.
                check = SERVICES[other].get("healthcheck", {})
                assert "test" in check or ("build" in SERVICES[other] and not check), other
    studio = SERVICES["studio"]["depends_on"]
    assert studio["postgres"]["condition"] == "service_healthy"
    assert studio["create-bucket"]["condition"] == "service_completed_successfully"


def test_profiles_services_are_only_needed_by_their_own_profile() -> None:
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        for other in depends:
            # A service without a profile must not wait for one that starts only with a profile.
            if not service.get("profiles"):
                assert not SERVICES[other].get("profiles"), f"{name} -> {other}"


def test_the_studio_serves_and_the_workers_run_the_jobs() -> None:
    assert command("studio") == "tuneforge serve"
    assert command("worker") == "tuneforge worker"
    studio = manifests.service_environment(SERVICES["studio"])
    assert studio["TUNEFORGE_RUN_JOBS"] == "false"
    assert "TUNEFORGE_RUN_JOBS" not in manifests.service_environment(SERVICES["worker"])
    assert SERVICES["studio"]["ports"] == ["7860:7860"]
    # The image's health check (the studio's HTTP) stays on for the studio only.
    assert "healthcheck" not in SERVICES["studio"]
    for name in TUNEFORGE[1:]:
        assert SERVICES[name]["healthcheck"] == {"disable": True}, name


def test_the_bucket_one_shot_creates_the_bucket_the_store_uses() -> None:
    script = command("create-bucket")
    storage = manifests.service_environment(SERVICES["studio"])["TUNEFORGE_STORAGE_URL"]
    bucket = storage.removeprefix("s3://").split("/")[0]
    assert f"mc mb --ignore-existing store/{bucket}" in script
    assert "http://minio:9000" in script
    # `$$` in the file is compose's escape: the shell sees `$MINIO_ROOT_USER`.
    assert '"$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"' in script
    assert "restart" not in SERVICES["create-bucket"]  # a one-shot ends


def test_the_ray_profile_runs_jobs_on_ray() -> None:
    ray = {name for name, service in SERVICES.items() if "ray" in service.get("profiles", [])}
    assert ray == {"ray-head", "ray-node", "ray-worker"}
    environment = manifests.service_environment(SERVICES["ray-worker"])
    assert environment["TUNEFORGE_EXECUTOR"] == "ray"
    assert environment["TUNEFORGE_RAY_ADDRESS"] == "auto"
    assert "ray start --head --port=6379" in command("ray-head")
    head = "--address=ray-head:6379"
    assert head in command("ray-node") and head in command("ray-worker")
    # The worker that hands jobs to Ray offers no CPUs itself, then becomes `tuneforge worker`.
    assert "--num-cpus=0" in command("ray-worker")
    assert command("ray-worker").endswith("&& exec tuneforge worker")
    for name in ray:
        assert SERVICES[name]["shm_size"], name  # Ray's object store is in shared memory
    # Without the profile, no service uses Ray.
    for name, service in SERVICES.items():
        if name not in ray:
            executor = manifests.service_environment(service).get("TUNEFORGE_EXECUTOR", "local")
            assert executor == "local", name


def test_the_variant_switches_the_image() -> None:
    cuda = manifests.compose(compose_values() | {"IMAGE_VARIANT": "cuda"})["services"]
    assert cuda["studio"]["image"] == "tuneforge:cuda"
    assert cuda["studio"]["build"]["args"]["VARIANT"] == "cuda"


def test_the_gpu_file_gives_gpus_to_services_that_run_jobs() -> None:
    import yaml

    gpu = yaml.safe_load((manifests.DEPLOY / "compose.gpu.yaml").read_text())
    assert set(gpu["services"]) == {"worker", "ray-node"}
    for name, service in gpu["services"].items():
        assert name in SERVICES
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}


def test_workers_start_after_the_studio_has_migrated_the_database() -> None:
    # Every TuneForge process migrates at start; the studio goes first, the rest once it is healthy.
    for name in ("worker", "ray-head"):
        depends = SERVICES[name]["depends_on"]
        assert depends["studio"]["condition"] == "service_healthy", name
        assert depends["postgres"]["condition"] == "service_healthy", name
    assert "studio" not in SERVICES["studio"]["depends_on"]
    # The Ray nodes and the runner wait for the head, which waits for the studio.
    for name in ("ray-node", "ray-worker"):
        assert set(SERVICES[name]["depends_on"]) == {"ray-head"}, name
