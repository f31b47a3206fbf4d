"""DNS rebinding: the endpoint check pins the addresses it approved, the server's HTTP clients
connect to those (keeping the host's name in the request) whatever the name resolves to later,
and a client that cannot be pinned is refused when the name now resolves elsewhere."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tuneforge import pinned as pinned_module
from tuneforge.data.synthesis.generator import ChatEndpoint, GenerationFailed
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.jobs.endpoints import check_endpoint, confirm_endpoint
from tuneforge.pinned import pin, pinned, pinned_transport
from tuneforge.settings import Settings

USER = User(username="alice", is_admin=False)
REAL_GETADDRINFO = socket.getaddrinfo


class _Judge(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.hosts.append(self.headers["Host"])
        body = json.dumps({"choices": [{"message": {"content": "pinned"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def judge() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _answers(monkeypatch: pytest.MonkeyPatch, host: str, *answers: str) -> None:
    """`host` resolves to each of `answers` in turn (the last one from then on); a name server
    that rebinds."""
    queue = list(answers)

    def getaddrinfo(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return REAL_GETADDRINFO(name, port, *args, **kwargs)
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_the_check_pins_what_it_approved(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = f"rebind-{uuid.uuid4().hex[:8]}.example"
    _answers(monkeypatch, host, "8.8.8.8", "127.0.0.1")
    check_endpoint(f"https://{host}/v1", USER, settings, "The judge's base_url")
    assert pinned(host) == {ipaddress.ip_address("8.8.8.8")}
    with pytest.raises(InvalidInput, match=r"now resolves to 127\.0\.0\.1") as refused:
        confirm_endpoint(f"https://{host}/v1", "The S3 endpoint_url")
    assert "does not call a host whose address changes" in refused.value.message


def test_a_refused_address_is_not_pinned(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = f"private-{uuid.uuid4().hex[:8]}.example"
    _answers(monkeypatch, host, "10.0.0.7")
    with pytest.raises(InvalidInput, match=r"reaches 10\.0\.0\.7"):
        check_endpoint(f"http://{host}/v1", USER, settings, "The judge's base_url")
    assert pinned(host) is None


def test_connections_go_to_the_pinned_address_whatever_dns_says_later(
    judge: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = f"judge-{uuid.uuid4().hex[:8]}.example"
    _answers(monkeypatch, host, "127.0.0.2")  # what the name says now: nothing listens there
    url = f"http://{host}:{judge}/v1"
    unpinned = ChatEndpoint(url, "m", None, who="judge", failure=GenerationFailed, delays=[])
    with pytest.raises(GenerationFailed, match="did not answer"):
        unpinned.complete([{"role": "user", "content": "hi"}])
    unpinned.close()
    pin(host, [ipaddress.ip_address("127.0.0.1")])  # what the check approved
    endpoint = ChatEndpoint(url, "m", None, who="judge", failure=GenerationFailed, delays=[])
    assert endpoint.complete([{"role": "user", "content": "hi"}]).text == "pinned"
    endpoint.close()
    assert _Judge.hosts[-1] == f"{host}:{judge}"  # the request keeps the host's name


def test_unpinned_hosts_resolve_as_usual(judge: int) -> None:
    with httpx.Client(transport=pinned_transport()) as client:
        answer = client.post(f"http://localhost:{judge}/v1/chat/completions", json={})
    assert answer.json()["choices"][0]["message"]["content"] == "pinned"


def test_the_oldest_pins_are_forgotten_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pinned_module, "MAX_PINS", 3)
    hosts = [f"bound-{n}-{uuid.uuid4().hex[:8]}.example" for n in range(4)]
    for host in hosts:
        pin(host, [ipaddress.ip_address("8.8.8.8")])
    assert pinned(hosts[0]) is None
    assert all(pinned(host) for host in hosts[1:])
