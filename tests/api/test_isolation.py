"""Two users against every endpoint: no token answers 401, another user's id answers 404 exactly
like a missing one. The route table is checked against the app, so a new endpoint must be added."""

from __future__ import annotations

import pytest

from tests.conftest import add_user, bearer
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Export, Model

MISSING = "0" * 32
MAPPING = {"user": {"column": "question"}, "assistant": {"column": "answer"}}
PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/login")}
# Every protected endpoint, with a body that would be valid.
HELLO = {"role": "user", "content": "Hello"}
# Chat routes name their model in the body: their scoping is in test_chat_api and test_openai_api.
ROUTES: dict[tuple[str, str], dict[str, object] | None] = {
    ("GET", "/api/v1/me"): None,
    ("GET", "/api/v1/tokens"): None,
    ("POST", "/api/v1/tokens"): {"name": "ci"},
    ("DELETE", "/api/v1/tokens/{token_id}"): None,
    ("POST", "/api/v1/jobs"): {"kind": "diagnostic", "spec": {"seconds": 1}},
    ("GET", "/api/v1/jobs"): None,
    ("GET", "/api/v1/jobs/{job_id}"): None,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): None,
    ("DELETE", "/api/v1/jobs/{job_id}"): None,
    ("GET", "/api/v1/jobs/{job_id}/events"): None,
    ("POST", "/api/v1/datasets"): None,  # multipart, see UPLOADS
    ("GET", "/api/v1/datasets"): None,
    ("POST", "/api/v1/datasets/import"): {"source": "huggingface", "path": "tatsu-lab/alpaca"},
    ("GET", "/api/v1/datasets/{dataset_id}"): None,
    ("DELETE", "/api/v1/datasets/{dataset_id}"): None,
    ("GET", "/api/v1/datasets/{dataset_id}/rows"): None,
    ("POST", "/api/v1/datasets/{dataset_id}/preview"): MAPPING,
    ("POST", "/api/v1/datasets/{dataset_id}/process"): {"mapping": MAPPING},
    ("GET", "/api/v1/datasets/{dataset_id}/report"): None,
    ("GET", "/api/v1/datasets/{dataset_id}/stats"): None,
    ("POST", "/api/v1/datasets/{dataset_id}/augment/preview"): {"methods": [{"name": "swap"}]},
    ("POST", "/api/v1/datasets/{dataset_id}/augment"): {"methods": [{"name": "swap"}]},
    ("POST", "/api/v1/datasets/synthesize"): None,  # multipart, see UPLOADS
    ("GET", "/api/v1/datasets/{dataset_id}/synthesis"): None,
    ("POST", "/api/v1/datasets/{dataset_id}/synthesis/resume"): None,
    ("POST", "/api/v1/jobs/{job_id}/resume"): None,
    ("GET", "/api/v1/jobs/{job_id}/metrics"): None,
    ("GET", "/api/v1/models"): None,
    ("GET", "/api/v1/models/{model_id}"): None,
    ("DELETE", "/api/v1/models/{model_id}"): None,
    ("GET", "/api/v1/catalog"): None,
    ("POST", "/api/v1/trainings/estimate"): {"base_model": "tiny-random-gemma3", "dataset_id": "x"},
    ("GET", "/api/v1/trainings/recommendations"): None,
    ("GET", "/api/v1/trainings/compare"): None,
    ("GET", "/api/v1/trainings/presets"): None,
    ("GET", "/api/v1/trainings/presets/{preset_id}"): None,
    ("GET", "/api/v1/trainings/graders/library"): None,
    ("POST", "/api/v1/trainings/graders/try"): {
        "graders": [{"type": "regex", "pattern": "[0-9]+"}],
        "completion": "42",
        "row": {},
    },
    ("GET", "/api/v1/chat/models"): None,
    ("POST", "/api/v1/chat"): {"model": "tiny-random-gemma3", "messages": [HELLO]},
    ("GET", "/v1/models"): None,
    ("POST", "/v1/chat/completions"): {"model": "tiny-random-gemma3", "messages": [HELLO]},
    ("POST", "/v1/completions"): {"model": "tiny-random-gemma3", "prompt": "Hello"},
    ("GET", "/api/v1/evaluations/{job_id}"): None,
    ("GET", "/api/v1/evaluations/{job_id}/samples"): None,
    ("GET", "/api/v1/evaluations/{job_id}/samples.csv"): None,
    ("GET", "/api/v1/evaluations/{job_id}/samples.jsonl"): None,
    ("GET", "/api/v1/secrets"): None,
    ("GET", "/api/v1/models/{model_id}/export-choices"): None,
    ("POST", "/api/v1/models/{model_id}/exports"): {"format": "adapter"},
    ("GET", "/api/v1/models/{model_id}/exports"): None,
    ("GET", "/api/v1/exports/{export_id}"): None,
    ("DELETE", "/api/v1/exports/{export_id}"): None,
    ("GET", "/api/v1/exports/{export_id}/download"): None,
    ("PUT", "/api/v1/secrets/{name}"): {"value": "a-secret-value"},
    ("DELETE", "/api/v1/secrets/{name}"): None,
    ("GET", "/api/v1/quota"): None,
    ("GET", "/api/v1/admin/users/{username}/quota"): None,
    ("PUT", "/api/v1/admin/users/{username}/quota"): {"concurrent_jobs": 2},
}
# Routes with an id of something nobody owns (the same for everyone), setting a secret (every
# user has their own secret names, so Bob's PUT makes Bob's secret, see `test_lists_show_...`),
# and the administrators' quota routes (403 for others, see test_quotas).
SHARED = {
    ("GET", "/api/v1/trainings/presets/{preset_id}"),
    ("PUT", "/api/v1/secrets/{name}"),
    ("GET", "/api/v1/admin/users/{username}/quota"),
    ("PUT", "/api/v1/admin/users/{username}/quota"),
}
UPLOADS = {("POST", "/api/v1/datasets"), ("POST", "/api/v1/datasets/synthesize")}
CSV = b"question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n"


def send(
    client,
    method: str,
    route: str,
    ids: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
):
    """Call an endpoint (`route` with its ids filled in) with a valid body for it."""
    path = route.format(**(ids or {}), preset_id="gemma-3-270m_lora", username="alice")
    if (method, route) in UPLOADS:
        return client.post(path, files={"file": ("qa.csv", CSV, "text/csv")}, headers=headers)
    return client.request(method, path, json=ROUTES[(method, route)], headers=headers)


@pytest.fixture
def world(make_client, settings):
    """Alice (an admin, so she can run diagnostic jobs) owns a job, a token, a dataset, a model
    and a secret; Bob owns nothing."""
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice", admin=True))
    bob = bearer(add_user(settings, "bob"))
    job = client.post("/api/v1/jobs", json=ROUTES[("POST", "/api/v1/jobs")], headers=alice)
    assert job.status_code == 201
    client.post(f"/api/v1/jobs/{job.json()['id']}/cancel", headers=alice)
    token = client.post("/api/v1/tokens", json={"name": "alice's"}, headers=alice)
    dataset = send(client, "POST", "/api/v1/datasets", headers=alice)
    assert dataset.status_code == 201, dataset.text
    secret = client.put("/api/v1/secrets/ALICE_KEY", json={"value": "alice's"}, headers=alice)
    assert secret.status_code == 200, secret.text
    model_id = _model(settings, job.json()["owner_id"], job.json()["id"])
    ids = {
        "job_id": job.json()["id"],
        "token_id": token.json()["id"],
        "dataset_id": dataset.json()["id"],
        "model_id": model_id,
        "export_id": _export(settings, job.json()["owner_id"], model_id),
        "name": "ALICE_KEY",
    }
    return client, alice, bob, ids


def _model(settings, owner_id: str, job_id: str) -> str:
    """A model record (as a training run leaves it), without training one."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        model = Model(
            owner_id=owner_id,
            name="m",
            base_model="tiny-random-gemma3",
            kind="adapter",
            job_id=job_id,
            spec={},
            metrics={},
            artifact_key=f"{owner_id}/train/{job_id}/model",
        )
        session.add(model)
        session.flush()
        return model.id


def _export(settings, owner_id: str, model_id: str) -> str:
    """An export record of the model (as a finished export job leaves it)."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        export = Export(
            owner_id=owner_id,
            model_id=model_id,
            format="adapter",
            destination={"kind": "download"},
            status="succeeded",
            artifact_key=f"{owner_id}/exports/{model_id}/adapter",
        )
        session.add(export)
        session.flush()
        return export.id


def test_the_table_covers_every_endpoint(make_client) -> None:
    paths = make_client(auth="local").get("/api/v1/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert routes == set(ROUTES) | PUBLIC


@pytest.mark.parametrize(("method", "path"), list(ROUTES))
def test_no_token_is_401(world, method: str, path: str) -> None:
    client, _, _, ids = world
    response = send(client, method, path, ids)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    bad = send(client, method, path, ids, bearer("tf_not-a-real-token"))
    assert bad.status_code == 401


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if "{" in r[1] and r not in SHARED])
def test_another_users_id_is_404_like_a_missing_one(world, method: str, path: str) -> None:
    client, alice, bob, ids = world
    foreign = send(client, method, path, ids, bob)
    missing = send(client, method, path, dict.fromkeys(ids, MISSING), bob)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["error"]["code"] == "not_found"
    # The same answer, but for the id itself.
    message = foreign.json()["error"]["message"]
    for value in ids.values():
        message = message.replace(value, MISSING)
    assert message == missing.json()["error"]["message"]
    # Alice still has everything.
    assert client.get(f"/api/v1/jobs/{ids['job_id']}", headers=alice).status_code == 200
    assert ids["token_id"] in client.get("/api/v1/tokens", headers=alice).text
    assert client.get(f"/api/v1/datasets/{ids['dataset_id']}", headers=alice).status_code == 200
    assert client.get(f"/api/v1/models/{ids['model_id']}", headers=alice).status_code == 200
    assert client.get(f"/api/v1/exports/{ids['export_id']}", headers=alice).status_code == 200
    assert [s["name"] for s in client.get("/api/v1/secrets", headers=alice).json()] == ["ALICE_KEY"]


def test_lists_show_only_ones_own(world) -> None:
    client, alice, bob, ids = world
    assert client.get("/api/v1/jobs", headers=bob).json() == {"items": [], "total": 0}
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=alice).json()["items"]] == [
        ids["job_id"]
    ]
    assert ids["token_id"] not in client.get("/api/v1/tokens", headers=bob).text
    assert client.get("/api/v1/datasets", headers=bob).json() == {"items": [], "total": 0}
    assert client.get("/api/v1/datasets", headers=alice).json()["total"] == 1
    assert client.get("/api/v1/models", headers=bob).json() == {"items": [], "total": 0}
    assert client.get("/api/v1/models", headers=alice).json()["total"] == 1
    assert client.get("/api/v1/secrets", headers=bob).json() == []
    # Bob setting the same name makes his own secret; Alice's stays hers.
    assert send(client, "PUT", "/api/v1/secrets/{name}", ids, bob).status_code == 200
    assert [s["name"] for s in client.get("/api/v1/secrets", headers=bob).json()] == ["ALICE_KEY"]
    assert client.delete("/api/v1/secrets/ALICE_KEY", headers=bob).status_code == 204
    assert [s["name"] for s in client.get("/api/v1/secrets", headers=alice).json()] == ["ALICE_KEY"]


def test_admins_see_everyones_jobs(world, settings) -> None:
    client, _, bob, _ = world
    carol = bearer(add_user(settings, "carol", admin=True))
    assert client.get("/api/v1/jobs", headers=carol).json()["total"] == 1
    assert client.post("/api/v1/jobs", json={"kind": "diagnostic"}, headers=bob).status_code == 403
