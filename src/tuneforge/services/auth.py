"""Who is asking: the implicit local user, a bearer token, a session cookie or a gateway header."""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import defaultdict, deque

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from tuneforge.db.tables import User
from tuneforge.errors import RateLimited, Unauthenticated
from tuneforge.services import accounts
from tuneforge.settings import Settings

SESSION_COOKIE = "tuneforge_session"
PROXY_SECRET_HEADER = "X-TuneForge-Proxy-Secret"  # noqa: S105 (a header name)


class SessionSigner:
    """Signs the UI's session cookie, which carries only the user id and its age."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="tuneforge-session")
        self.max_age = max_age

    def sign(self, user: User) -> str:
        return self._serializer.dumps({"uid": user.id})

    def user_id(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        uid = data.get("uid") if isinstance(data, dict) else None
        return uid if isinstance(uid, str) else None


class LoginLimiter:
    """Counts failed logins per (address, user name) over the last minute, in this process."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] < time.monotonic() - 60:
            failures.popleft()
        return failures

    def check(self, address: str, username: str) -> None:
        with self._lock:
            if len(self._recent((address, username))) >= self.per_minute:
                raise RateLimited("Too many failed logins; wait a minute and try again.")

    def failed(self, address: str, username: str) -> None:
        with self._lock:
            self._recent((address, username)).append(time.monotonic())

    def succeeded(self, address: str, username: str) -> None:
        with self._lock:
            self._failures.pop((address, username), None)


def login(
    session: Session, limiter: LoginLimiter, address: str, username: str, password: str
) -> User:
    limiter.check(address, username)
    user = accounts.authenticate(session, username, password)
    if user is None:
        limiter.failed(address, username)
        raise Unauthenticated("Wrong user name or password.")
    limiter.succeeded(address, username)
    return user


def _trusted_proxy(settings: Settings, address: str | None, secret: str | None) -> bool:
    """Whether a request may set the user header: it carries the proxy secret (when one is
    set), or comes from an address in `trusted_proxies`; loopback addresses count only while
    `trusts_loopback` (by default, only when no proxy secret is set)."""
    if settings.proxy_secret and secret:
        return hmac.compare_digest(settings.proxy_secret.encode(), secret.encode())
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback and not settings.trusts_loopback:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.trusted_proxies)


def resolve_user(
    session: Session,
    settings: Settings,
    signer: SessionSigner,
    *,
    address: str | None,
    headers: dict[str, str],
    cookie: str | None,
    allow_cookie: bool,
) -> User:
    """The user behind a request, by the configured auth mode, or `Unauthenticated`.

    `headers` has lower-case names. The cookie counts only where `allow_cookie` (the UI, and the
    API's read-only methods, so that no other site can make a browser change anything).
    """
    mode = settings.auth_mode
    if mode == "none":
        return accounts.ensure_user(session, accounts.LOCAL_USER, is_admin=True)
    if mode == "header":
        username = headers.get(settings.auth_header.lower())
        if not username:
            raise Unauthenticated(f"The gateway did not send {settings.auth_header}.")
        if not _trusted_proxy(settings, address, headers.get(PROXY_SECRET_HEADER.lower())):
            raise Unauthenticated("This address may not set the user header.")
        return accounts.ensure_user(session, username)
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        user = accounts.user_for_token(session, authorization[7:].strip())
        if user is None:
            raise Unauthenticated("The API token is invalid or was revoked.")
        return user
    uid = signer.user_id(cookie) if allow_cookie else None
    user = session.get(User, uid) if uid else None
    if user is None:
        raise Unauthenticated("Log in, or send an API token as `Authorization: Bearer tf_...`.")
    return user
