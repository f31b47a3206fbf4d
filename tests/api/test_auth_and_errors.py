"""Auth modes, login, tokens, the error shape and request limits."""

from __future__ import annotations

import re

from tests.conftest import add_user, bearer
from tuneforge.services.auth import SESSION_COOKIE


def test_health_reports_each_part(make_client) -> None:
    body = make_client(run_jobs=True).get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert (body["database"], body["storage"], body["runner"]) == ("ok", "ok", "ok")
    assert make_client().get("/api/v1/health").json()["runner"] == "external"


def test_none_mode_is_one_implicit_admin(make_client) -> None:
    client = make_client(auth="none")
    me = client.get("/api/v1/me").json()
    assert me["username"] == "local" and me["is_admin"] is True
    assert client.post("/api/v1/jobs", json={"kind": "diagnostic"}).status_code == 201


def test_login_tokens_and_revocation(make_client, settings) -> None:
    client = make_client(auth="local")
    add_user(settings, "alice")
    wrong = client.post("/api/v1/auth/login", json={"username": "alice", "password": "nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == {
        "code": "unauthenticated",
        "message": "Wrong user name or password.",
        "details": {},
    }
    unknown = client.post("/api/v1/auth/login", json={"username": "zed", "password": "nope"})
    assert unknown.json() == wrong.json()  # an unknown user looks like a wrong password
    login = client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": "password-alice"}
    )
    assert login.status_code == 201
    token = login.json()["token"]
    assert token.startswith("tf_") and login.json()["prefix"] == token[:10]
    assert client.get("/api/v1/me", headers=bearer(token)).json()["username"] == "alice"
    listed = client.get("/api/v1/tokens", headers=bearer(token)).json()
    assert all("token" not in t for t in listed)  # the secret is never shown again
    assert (
        client.delete(f"/api/v1/tokens/{login.json()['id']}", headers=bearer(token)).status_code
        == 204
    )
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_failed_logins_are_rate_limited(make_client, settings) -> None:
    client = make_client(auth="local", login_attempts_per_minute=3)
    add_user(settings, "alice")
    for _ in range(3):
        r = client.post("/api/v1/auth/login", json={"username": "alice", "password": "bad"})
        assert r.status_code == 401
    right = {"username": "alice", "password": "password-alice"}
    limited = client.post("/api/v1/auth/login", json=right)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"


def test_the_session_cookie_only_reads(make_client, settings) -> None:
    """The UI's cookie works for GET, never for a change (no cross-site requests)."""
    client = make_client(auth="local")
    add_user(settings, "alice", admin=True)
    from tuneforge.db.session import make_engine, make_sessionmaker, transaction
    from tuneforge.services.accounts import get_user

    with transaction(make_sessionmaker(make_engine(settings.resolved_database_url))) as s:
        user = get_user(s, "alice")
        assert user is not None
        cookie = client.app.state.signer.sign(user)
    client.cookies.set(SESSION_COOKIE, cookie)
    assert client.get("/api/v1/me").json()["username"] == "alice"
    assert client.post("/api/v1/jobs", json={"kind": "diagnostic"}).status_code == 401
    client.cookies.set(SESSION_COOKIE, cookie[:-2] + "xx")
    assert client.get("/api/v1/me").status_code == 401


def test_header_mode_trusts_only_the_gateway(make_client) -> None:
    client = make_client(auth="header", proxy_secret="s3cret", trusted_proxies=[])
    me = client.get(
        "/api/v1/me", headers={"X-Forwarded-User": "dana", "X-TuneForge-Proxy-Secret": "s3cret"}
    )
    assert me.status_code == 200 and me.json()["username"] == "dana"
    forged = client.get(
        "/api/v1/me", headers={"X-Forwarded-User": "dana", "X-TuneForge-Proxy-Secret": "guess"}
    )
    assert forged.status_code == 401
    assert client.get("/api/v1/me", headers={"X-Forwarded-User": "dana"}).status_code == 401


def test_errors_share_one_shape(make_client) -> None:
    client = make_client()
    bad_spec = client.post("/api/v1/jobs", json={"kind": "diagnostic", "spec": {"seconds": -1}})
    assert bad_spec.status_code == 422
    error = bad_spec.json()["error"]
    assert error["code"] == "invalid_input" and "seconds" in error["message"]
    unknown = client.post("/api/v1/jobs", json={"kind": "mine-bitcoin"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_input"
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    not_json = client.post(
        "/api/v1/jobs", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422


def test_request_bodies_are_bounded(make_client) -> None:
    client = make_client(max_request_bytes=1000)
    big = {"kind": "diagnostic", "spec": {"seconds": 1}, "padding": "x" * 2000}
    declared = client.post("/api/v1/jobs", json=big)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"kind": "diagnostic", "x": "'
        for _ in range(100):
            yield b"y" * 100
        yield b'"}'

    streamed = client.post(
        "/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_openapi_describes_every_field(make_client) -> None:
    schemas = make_client().get("/api/v1/openapi.json").json()["components"]["schemas"]
    undescribed = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        if not name.startswith(("HTTPValidationError", "ValidationError"))
        for field, spec in schema.get("properties", {}).items()
        if "description" not in spec
    ]
    assert undescribed == []


def test_upload_routes_take_large_bodies_and_only_they() -> None:
    """The datasets endpoint and the web UI's upload widgets get the upload limit; not others."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient as StarletteClient

    from tuneforge.api.app import UI_UPLOAD_PATTERNS
    from tuneforge.api.limits import BodyLimit

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    inner = Starlette(routes=[Route("/{path:path}", echo, methods=["POST"])])
    app = BodyLimit(
        inner,
        default=100,
        upload=10_000,
        upload_paths=frozenset({"/api/v1/datasets"}),
        upload_patterns=UI_UPLOAD_PATTERNS,
    )
    client = StarletteClient(app)
    body = b"x" * 5_000
    widget = "/_nicegui/client/0b5c7a52-1b6d-4a55-8a43-7a1e0e1f3c9d/upload/12"
    assert client.post("/api/v1/datasets", content=body).text == "5000"
    assert client.post(widget, content=body).text == "5000"
    assert client.post("/api/v1/jobs", content=body).status_code == 413
    assert client.post(widget + "/x", content=body).status_code == 413  # whole-path match only
    assert client.post("/api/v1/datasets", content=b"x" * 20_000).status_code == 413


def test_the_api_docs_load_nothing_from_other_hosts(make_client) -> None:
    client = make_client()
    html = client.get("/docs")
    assert html.status_code == 200 and "/api/v1/openapi.json" in html.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert assets and all(a.startswith("/api/docs-assets/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
