"""Endpoints that users name for the server to call (a judge's API, an S3-compatible service).

In a studio many users share, a user must not make the server reach into its own network (its
database, a cloud metadata service, another internal host). So an endpoint a non-administrator
names must resolve to public addresses only, unless an administrator trusts its host in
`trusted_endpoint_hosts` (a vLLM judge or a MinIO on the local network, say). Administrators,
and the one user of `auth: none`, may name any endpoint. The check runs when the job is
launched and again in the worker just before the endpoint is used; the addresses it approves are
pinned (`tuneforge.pinned`), so the worker's connections go there and nowhere a second
resolution would point. Clients that cannot be pinned are confirmed (`confirm_endpoint`) just
before they call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from tuneforge.db.repositories.secrets import has_secret
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.jobs.inputs import usable_model
from tuneforge.pinned import changed_addresses, pin, resolve
from tuneforge.settings import Settings

if TYPE_CHECKING:
    from tuneforge.data.synthesis.generator import EndpointGenerator, LocalGenerator


class CalledEndpoint(Protocol):
    """A spec naming an endpoint to call and the secret holding its key (a judge, a generator)."""

    @property
    def base_url(self) -> str: ...

    @property
    def api_key_secret(self) -> str | None: ...


def check_endpoint(url: str, user: User, settings: Settings, what: str) -> None:
    """Refuse `url` (described as `what`, such as "The judge's base_url") when `user` may not
    make the server call it; else pin its host to the addresses approved."""
    if user.is_admin:
        return
    host = urlsplit(url).hostname
    if not host:
        raise InvalidInput(f"{what} {url} names no host.")
    if host.lower() in {trusted.lower() for trusted in settings.trusted_endpoint_hosts}:
        return
    addresses = resolve(host)
    for address in addresses:
        if not address.is_global:
            raise InvalidInput(
                f"{what} {url} reaches {address}, a private or local address of this server's "
                "network, which only administrators may use; an administrator can trust the "
                "host in trusted_endpoint_hosts (TUNEFORGE_TRUSTED_ENDPOINT_HOSTS)."
            )
    pin(host, addresses)


def confirm_endpoint(url: str, what: str) -> None:
    """Just before a client that cannot be pinned (MLflow's) calls `url`, checked
    by `check_endpoint` in this process: refuse it when its host now resolves to an address the
    check did not approve."""
    host = urlsplit(url).hostname
    changed = changed_addresses(host) if host else set()
    if changed:
        shown = ", ".join(sorted(str(address) for address in changed))
        raise InvalidInput(
            f"{what} {url} now resolves to {shown}, which it did not when it was checked; "
            "TuneForge does not call a host whose address changes between its check and the "
            "call. An administrator can trust the host in trusted_endpoint_hosts "
            "(TUNEFORGE_TRUSTED_ENDPOINT_HOSTS)."
        )


def check_judges(
    judges: Sequence[CalledEndpoint],
    user: User,
    settings: Settings,
    session: Session | None = None,
    what: str = "The judge's",
) -> None:
    """Refuse judges whose address `user` may not make the server call, and (given a
    `session`, at launch) judges whose key secret is not set."""
    for judge in judges:
        check_endpoint(judge.base_url, user, settings, f"{what} base_url")
        key = judge.api_key_secret
        if session is not None and key is not None and not has_secret(session, user.id, key):
            raise InvalidInput(
                f"{what} key secret {key} is not set: set it under Settings, Secrets (or "
                f"with `tuneforge secrets set {key}`), or leave api_key_secret empty."
            )


def check_generator(
    spec: EndpointGenerator | LocalGenerator,
    user: User,
    settings: Settings,
    session: Session | None = None,
) -> None:
    """Refuse a generator endpoint `user` may not make the server call, or (given a `session`,
    at launch) whose key secret is not set; and (given a `session`) a local model that is not
    the user's to use or cannot run here."""
    if spec.kind == "endpoint":
        check_judges([spec], user, settings, session, what="The generator's")
    elif session is not None:
        usable_model(session, user, settings, spec.model)
