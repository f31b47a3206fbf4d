"""Per-user quotas: server defaults, an administrator's overrides (API and CLI), refusals that
say the limit, the usage and what to do, and the usage shown to the user."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.api.test_dataset_sources import wait_ready
from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tests.hub_server import FakeHub
from tuneforge.cli import app
from tuneforge.data.config import DatasetImport
from tuneforge.data.hub import download_slack
from tuneforge.data.limits import size_text
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.services import accounts, datasets
from tuneforge.settings import Settings

IMPORT = {"source": "huggingface", "path": "tester/rows"}  # queued only: no runner here
CSV = b"question,answer\n" + b"".join(b"q%d,a%d\n" % (i, i) for i in range(200))


def _import(client: TestClient, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    response = client.post("/api/v1/datasets/import", json=IMPORT, headers=headers)
    return response.status_code, response.json()


def test_job_quotas_from_the_server_defaults_and_an_administrators_override(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client(
        auth="local", run_jobs=False, quota_concurrent_jobs=1, quota_jobs_per_day=2
    )
    admin = bearer(add_user(settings, "root", admin=True))
    alice = bearer(add_user(settings, "alice"))

    mine = client.get("/api/v1/quota", headers=alice).json()
    assert mine["concurrent_jobs_limit"] == 1 and mine["jobs_per_day_limit"] == 2
    assert mine["storage_bytes_limit"] is None and mine["own"]["concurrent_jobs"] is None

    assert _import(client, alice)[0] == 202
    status, body = _import(client, alice)
    assert status == 409
    error = body["error"]
    assert error["code"] == "quota_exceeded"
    assert "allows 1 jobs queued or running at once and you have 1" in error["message"]
    assert "cancel one" in error["message"]
    assert error["details"] == {"quota": "concurrent_jobs", "limit": 1, "used": 1}
    assert client.get("/api/v1/datasets", headers=alice).json()["total"] == 1, "rolled back"

    # Administrators have no limits unless one is set for them.
    assert all(_import(client, admin)[0] == 202 for _ in range(3))

    raised = client.put(
        "/api/v1/admin/users/alice/quota", json={"concurrent_jobs": 5}, headers=admin
    )
    assert raised.status_code == 200, raised.text
    assert raised.json()["own"] == {
        "storage_bytes": None,
        "concurrent_jobs": 5,
        "jobs_per_day": None,
    }
    assert raised.json()["concurrent_jobs_limit"] == 5 and raised.json()["jobs_per_day_limit"] == 2
    assert _import(client, alice)[0] == 202
    status, body = _import(client, alice)
    assert status == 429
    assert (
        "allows 2 jobs a day and you have started 2 in the last 24 hours"
        in (body["error"]["message"])
    )
    assert body["error"]["details"] == {"quota": "jobs_per_day", "limit": 2, "used": 2}

    usage = client.get("/api/v1/quota", headers=alice).json()
    assert (usage["jobs_in_flight"], usage["jobs_today"]) == (2, 2)


def test_the_storage_quota_counts_the_users_records(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client(auth="local", run_jobs=False)
    admin = bearer(add_user(settings, "root", admin=True))
    bob = bearer(add_user(settings, "bob"))
    carol = bearer(add_user(settings, "carol"))
    uploaded = client.post(
        "/api/v1/datasets", files={"file": ("rows.csv", CSV, "text/csv")}, headers=bob
    )
    assert uploaded.status_code == 201, uploaded.text
    size = uploaded.json()["size_bytes"]
    assert size > len(CSV)  # the original and its Parquet copy
    assert client.get("/api/v1/quota", headers=bob).json()["storage_bytes_used"] == size
    assert client.get("/api/v1/quota", headers=carol).json()["storage_bytes_used"] == 0

    client.put("/api/v1/admin/users/bob/quota", json={"storage_bytes": size}, headers=admin)
    status, body = _import(client, bob)
    assert status == 409
    assert body["error"]["details"] == {
        "quota": "storage_bytes",
        "limit": size,
        "used": size,
        "reserved": 0,
    }
    assert "Delete some of them" in body["error"]["message"]
    assert _import(client, carol)[0] == 202, "another user's storage is not counted"

    client.put("/api/v1/admin/users/bob/quota", json={"storage_bytes": size + 1}, headers=admin)
    assert _import(client, bob)[0] == 202
    again = client.post(
        "/api/v1/datasets", files={"file": ("more.csv", CSV, "text/csv")}, headers=bob
    )
    assert again.status_code == 409
    assert f"and this adds {size_text(len(CSV))}" in again.json()["error"]["message"]
    assert client.get("/api/v1/quota", headers=bob).json()["storage_bytes_used"] == size


def test_only_administrators_read_and_set_quotas(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client(auth="local", run_jobs=False)
    admin = bearer(add_user(settings, "root", admin=True))
    dave = bearer(add_user(settings, "dave"))
    path = "/api/v1/admin/users/dave/quota"
    assert client.put(path, json={"jobs_per_day": 100}, headers=dave).status_code == 403
    assert client.get(path, headers=dave).status_code == 403
    assert client.get("/api/v1/admin/users/nobody/quota", headers=admin).status_code == 404
    bad = client.put(path, json={"jobs_per_day": -1}, headers=admin)
    assert bad.status_code == 422
    assert client.get(path, headers=admin).json()["username"] == "dave"


def test_the_admin_command_shows_and_sets_a_quota(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    add_user(settings, "erin")
    env = {
        "TUNEFORGE_DATA_DIR": str(settings.data_dir),
        "TUNEFORGE_DATABASE_URL": settings.resolved_database_url,
        "TUNEFORGE_QUOTA_JOBS_PER_DAY": "7",
    }
    runner = CliRunner()
    shown = runner.invoke(app, ["admin", "quota", "erin"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "server default" in shown.stdout and "7" in shown.stdout

    set_ = runner.invoke(
        app, ["admin", "quota", "erin", "--storage", "2GiB", "--concurrent-jobs", "3"], env=env
    )
    assert set_.exit_code == 0, set_.output
    assert "2 GiB" in set_.stdout and "set for this user" in set_.stdout
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:  # an import in progress reserves its budget
        erin = accounts.get_user(session, "erin")
        assert erin is not None
        request = DatasetImport(source="huggingface", path="tester/rows")
        datasets.import_dataset(session, erin, settings, request)
    reserving = runner.invoke(app, ["admin", "quota", "erin"], env=env)
    assert "(+2 GiB reserved by imports)" in reserving.stdout

    kept = runner.invoke(
        app, ["admin", "quota", "erin", "--concurrent-jobs", "default", "--json"], env=env
    )
    assert kept.exit_code == 0, kept.output
    assert '"storage_bytes": 2147483648' in kept.stdout
    assert '"concurrent_jobs": null' in kept.stdout and '"jobs_per_day_limit": 7' in kept.stdout

    bad = runner.invoke(app, ["admin", "quota", "erin", "--storage", "lots"], env=env)
    assert bad.exit_code == 2 and "is not a limit" in bad.output
    missing = runner.invoke(app, ["admin", "quota", "nobody"], env=env)
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.output


@pytest.mark.slow
def test_a_users_hub_import_job_is_bounded_by_the_storage_left(
    make_client: Callable[..., TestClient],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The import job's worker reads its budget and the Hub's sizes before it downloads (a Hub
    on loopback, reached through the worker's HF_* environment); each import, started once the
    one before has ended, may take what that one left."""
    with FakeHub() as hub:
        hub.datasets["tester/one"] = {"train.jsonl": b'{"text": "a"}\n'}
        hub.datasets["tester/big"] = {"train.jsonl": b'{"text": "long"}\n' * 2_000}
        for name, value in (("ENDPOINT", hub.url), ("TOKEN", hub.token), ("HOME", tmp_path)):
            monkeypatch.setenv(f"HF_{name}", str(value))
        client = make_client(auth="local", run_jobs=True, quota_storage_bytes=20_000)
        gina = bearer(add_user(settings, "gina"))
        ended = {}
        for name in ("one", "big"):
            started = client.post(
                "/api/v1/datasets/import",
                json={"source": "huggingface", "path": f"tester/{name}"},
                headers=gina,
            )
            assert started.status_code == 202, started.text
            status = "succeeded" if name == "one" else "failed"
            wait_status(client, started.json()["job_id"], gina, status, timeout=120)
            ended[name] = wait_ready(client, gina, started.json()["id"])
    one, big = ended["one"], ended["big"]
    assert one["status"] == "ready" and one["rows"] == 1, one["error"]
    left = size_text(20_000 - one["size_bytes"])
    assert big["status"] == "failed"
    assert f"'tester/big' on the Hub takes 33.2 KiB, more than the {left}" in big["error"]


@pytest.mark.slow
def test_an_imports_reservation_is_lowered_to_the_size_the_hub_gives(
    make_client: Callable[..., TestClient],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A small dataset does not hold the whole of a large quota for as long as it downloads:
    once the Hub's metadata gives its size, the job keeps only that (with a margin)."""
    rows = b'{"text": "a"}\n' * 10
    with FakeHub() as hub:
        hub.datasets["tester/small"] = {"train.jsonl": rows}
        for name, value in (("ENDPOINT", hub.url), ("TOKEN", hub.token), ("HOME", tmp_path)):
            monkeypatch.setenv(f"HF_{name}", str(value))
        client = make_client(auth="local", run_jobs=True, quota_storage_bytes=2**30)
        ivy = bearer(add_user(settings, "ivy"))
        started = client.post(
            "/api/v1/datasets/import",
            json={"source": "huggingface", "path": "tester/small"},
            headers=ivy,
        )
        assert started.status_code == 202, started.text
        job = wait_status(client, started.json()["job_id"], ivy, "succeeded", timeout=120)
    assert job["spec"]["budget_bytes"] == len(rows) + download_slack(len(rows))
    events = client.get(f"/api/v1/jobs/{job['id']}/events", headers=ivy)  # it has ended
    assert "the Hub gives this dataset's size" in events.text


@pytest.mark.slow
def test_hub_imports_started_together_share_the_storage_left(
    make_client: Callable[..., TestClient],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Each import reserves its budget when it is started, and the quota shows it: the second
    one, started while the first is under way, may download only what the first left (both
    together stay within the quota), and the reservations end with the jobs."""
    small, large = b'{"text": "a"}\n' * 400, b'{"text": "b"}\n' * 700
    with FakeHub() as hub:
        hub.datasets["tester/small"] = {"train.jsonl": small}
        hub.datasets["tester/large"] = {"train.jsonl": large}
        for name, value in (("ENDPOINT", hub.url), ("TOKEN", hub.token), ("HOME", tmp_path)):
            monkeypatch.setenv(f"HF_{name}", str(value))
        client = make_client(
            auth="local", run_jobs=True, quota_storage_bytes=20_000, hub_import_max_bytes=12_000
        )
        hana = bearer(add_user(settings, "hana"))
        jobs = []
        for name in ("small", "large"):
            started = client.post(
                "/api/v1/datasets/import",
                json={"source": "huggingface", "path": f"tester/{name}"},
                headers=hana,
            )
            assert started.status_code == 202, started.text
            job = client.get(f"/api/v1/jobs/{started.json()['job_id']}", headers=hana).json()
            jobs.append(job)
        assert [job["spec"]["budget_bytes"] for job in jobs] == [12_000, 8_000]
        wait_status(client, jobs[0]["id"], hana, "succeeded", timeout=120)
        failed = wait_status(client, jobs[1]["id"], hana, "failed", timeout=120)
    assert f"takes {size_text(len(large))}, more than the {size_text(8_000)}" in str(
        failed["error"]
    )
    quota = client.get("/api/v1/quota", headers=hana).json()
    assert quota["storage_bytes_reserved"] == 0
    stored = wait_ready(client, hana, jobs[0]["spec"]["dataset_id"])
    assert stored["rows"] == 400 and quota["storage_bytes_used"] == stored["size_bytes"]
