"""`header` mode: who may set the user header. With a proxy secret, every request must carry it,
the ones from this machine too, unless an administrator trusts loopback (`auth_trust_loopback`);
without one, the gateway on this machine (loopback, in `trusted_proxies`) is trusted unless told
otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tuneforge.api.app import create_app
from tuneforge.settings import Settings

USER = {"X-Forwarded-User": "dana"}


@contextmanager
def _client(settings: Settings, address: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings, ui=False), client=(address, 41000)) as client:
        yield client


def _status(make_settings: Callable[..., Settings], address: str, **overrides: Any) -> int:
    settings = make_settings(auth="header", **overrides)
    with _client(settings, address) as client:
        return client.get("/api/v1/me", headers=USER).status_code


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_with_a_proxy_secret_loopback_must_send_it(make_settings, address: str) -> None:
    assert _status(make_settings, address, proxy_secret="s3cret") == 401
    settings = make_settings(auth="header", proxy_secret="s3cret")
    with _client(settings, address) as client:
        carrying = client.get("/api/v1/me", headers={**USER, "X-TuneForge-Proxy-Secret": "s3cret"})
        assert carrying.status_code == 200 and carrying.json()["username"] == "dana"


def test_loopback_is_trusted_with_a_secret_only_when_configured(make_settings) -> None:
    trusting = {"proxy_secret": "s3cret", "auth_trust_loopback": True}
    assert _status(make_settings, "127.0.0.1", **trusting) == 200
    assert _status(make_settings, "10.0.0.5", **trusting) == 401  # not in trusted_proxies


def test_without_a_secret_the_local_gateway_is_trusted_unless_told(make_settings) -> None:
    assert _status(make_settings, "127.0.0.1") == 200
    assert _status(make_settings, "127.0.0.1", auth_trust_loopback=False) == 401
    assert _status(make_settings, "10.0.0.5") == 401
    gateway = {"trusted_proxies": ["10.0.0.0/24"], "auth_trust_loopback": False}
    assert _status(make_settings, "10.0.0.5", **gateway) == 200


def test_the_rule_is_the_settings_own(make_settings) -> None:
    assert make_settings(auth="header").trusts_loopback
    assert not make_settings(auth="header", proxy_secret="s3cret").trusts_loopback
    assert make_settings(proxy_secret="s3cret", auth_trust_loopback=True).trusts_loopback
