"""Two users against every endpoint: no token answers 401, another user's id answers 404 exactly
like a missing one. The route table is checked against the app, so a new endpoint must be added."""

from __future__ import annotations

import pytest

from tests.conftest import add_user, bearer

MISSING = "0" * 32
PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/login")}
# Every protected endpoint, with a body that would be valid.
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
}


@pytest.fixture
def world(make_client, settings):
    """Alice (an admin, so she can run diagnostic jobs) owns a job and a token; Bob owns nothing."""
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice", admin=True))
    bob = bearer(add_user(settings, "bob"))
    job = client.post("/api/v1/jobs", json=ROUTES[("POST", "/api/v1/jobs")], headers=alice)
    assert job.status_code == 201
    client.post(f"/api/v1/jobs/{job.json()['id']}/cancel", headers=alice)
    token = client.post("/api/v1/tokens", json={"name": "alice's"}, headers=alice)
    ids = {"job_id": job.json()["id"], "token_id": token.json()["id"]}
    return client, alice, bob, ids


def test_the_table_covers_every_endpoint(make_client) -> None:
    paths = make_client(auth="local").get("/api/v1/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert routes == set(ROUTES) | PUBLIC


@pytest.mark.parametrize(("method", "path"), list(ROUTES))
def test_no_token_is_401(world, method: str, path: str) -> None:
    client, _, _, ids = world
    response = client.request(method, path.format(**ids), json=ROUTES[(method, path)])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    bad = client.request(
        method,
        path.format(**ids),
        json=ROUTES[(method, path)],
        headers=bearer("tf_not-a-real-token"),
    )
    assert bad.status_code == 401


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if "{" in r[1]])
def test_another_users_id_is_404_like_a_missing_one(world, method: str, path: str) -> None:
    client, alice, bob, ids = world
    body = ROUTES[(method, path)]
    foreign = client.request(method, path.format(**ids), json=body, headers=bob)
    missing = client.request(
        method, path.format(**dict.fromkeys(ids, MISSING)), json=body, headers=bob
    )
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


def test_lists_show_only_ones_own(world) -> None:
    client, alice, bob, ids = world
    assert client.get("/api/v1/jobs", headers=bob).json() == {"items": [], "total": 0}
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=alice).json()["items"]] == [
        ids["job_id"]
    ]
    assert ids["token_id"] not in client.get("/api/v1/tokens", headers=bob).text


def test_admins_see_everyones_jobs(world, settings) -> None:
    client, _, bob, _ = world
    carol = bearer(add_user(settings, "carol", admin=True))
    assert client.get("/api/v1/jobs", headers=carol).json()["total"] == 1
    assert client.post("/api/v1/jobs", json={"kind": "diagnostic"}, headers=bob).status_code == 403
