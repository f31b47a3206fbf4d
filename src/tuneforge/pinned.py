"""Connections that go to the addresses a host was checked at, not to what it resolves to later.

The endpoint check (`jobs/endpoints.py`) resolves a user's host and refuses private addresses.
If the client then resolved the host again, a name server that answers a public address first
and a private one a moment later (DNS rebinding) would slip past it. So the check pins the
addresses it approved (`pin`), and the HTTP clients the server opens towards users' endpoints
use `pinned_transport()` (httpx; `pinned_aiohttp.PinnedResolver` for s3fs), whose connections
to a pinned host go to those addresses only: the request keeps the host's name (its `Host`
header, TLS server name and certificate check). Hosts nobody pinned (an administrator's
endpoint, a trusted host) resolve as usual.

A library that opens its own connections (MLflow's client) cannot be pinned: for it
`changed_addresses` resolves the host once more, just before use, and names any address the
check did not approve.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable

import httpcore
import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Pins are needed only between a check and the connections that follow it in this process: the
#: oldest are forgotten past this many hosts, so that launches naming ever new hosts cannot
#: fill the web process's memory.
MAX_PINS = 4096

_pins: dict[str, frozenset[Address]] = {}  # oldest first
_lock = threading.Lock()


def resolve(host: str) -> set[Address]:
    """The addresses `host` stands for: itself when it is one, else what it resolves to now
    (none when it does not resolve)."""
    try:
        return {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return set()
    return {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}


def pin(host: str, addresses: Iterable[Address]) -> None:
    """From now on, this process connects to `host` only at `addresses` (the checked ones)."""
    with _lock:
        _pins.pop(host.lower(), None)
        _pins[host.lower()] = frozenset(addresses)
        while len(_pins) > MAX_PINS:
            del _pins[next(iter(_pins))]


def pinned(host: str) -> frozenset[Address] | None:
    """The addresses `host` is pinned to, or None when it is not."""
    with _lock:
        return _pins.get(host.lower())


def changed_addresses(host: str) -> set[Address]:
    """For a client that cannot be pinned: the addresses `host` resolves to now that its check
    did not approve (empty when it is not pinned, or resolves as checked)."""
    approved = pinned(host)
    if approved is None:
        return set()
    return resolve(host) - approved


class _PinnedBackend(httpcore.NetworkBackend):
    """Opens TCP connections to a pinned host's addresses, in turn until one answers."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = pinned(host)
        if addresses is None:
            return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        if not addresses:
            raise httpcore.ConnectError(f"{host} did not resolve when it was checked")
        failure: httpcore.ConnectError | None = None
        for address in sorted(addresses, key=lambda a: (a.version, int(a))):
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def pinned_transport(
    limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
) -> httpx.HTTPTransport:
    """An httpx transport whose connections to pinned hosts go to their checked addresses."""
    transport = httpx.HTTPTransport(limits=limits)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_PinnedBackend(),
    )
    return transport
