"""The aiohttp face of `tuneforge.pinned`, for clients built on aiohttp (s3fs, through
aiobotocore): a resolver that answers a pinned host with the addresses its check approved, so
their connections go there (the request keeps the host's name, for TLS too). Kept apart so that
only those clients import aiohttp."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from tuneforge.pinned import pinned


class PinnedResolver(AbstractResolver):
    """Resolves pinned hosts to their checked addresses, others as aiohttp does."""

    def __init__(self) -> None:
        self._inner: ThreadedResolver | None = None  # made in the event loop, on first use

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = pinned(host)
        if addresses is None:
            if self._inner is None:
                self._inner = ThreadedResolver()
            return await self._inner.resolve(host, port, family)
        if not addresses:
            raise OSError(f"{host} did not resolve when it was checked")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET if address.version == 4 else socket.AF_INET6,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in sorted(addresses, key=lambda a: (a.version, int(a)))
        ]

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
