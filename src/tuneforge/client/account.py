"""The server and your account through the client: health, who you are, your quota, your API
tokens (and, for administrators, other users' quotas)."""

from __future__ import annotations

from typing import Any

from tuneforge.client.base import ApiError, BaseClient
from tuneforge.schemas.quotas import QuotaPublic, QuotaSet


class AccountClient(BaseClient):
    """The client's server and account methods."""

    def health(self) -> dict[str, Any]:
        """The server's health report; `status` is `ok` or `degraded` (which is not an error)."""
        response = self._http.get("/health")
        if response.status_code not in (200, 503):
            raise ApiError.from_response(response)
        report: dict[str, Any] = response.json()
        return report

    def me(self) -> dict[str, Any]:
        user: dict[str, Any] = self._call("GET", "/me")
        return user

    def quota(self) -> QuotaPublic:
        """Your limits (storage, jobs at once, jobs a day) beside what you use."""
        return QuotaPublic.model_validate(self._call("GET", "/quota"))

    def user_quota(self, username: str) -> QuotaPublic:
        """Another user's quota (administrators only)."""
        return QuotaPublic.model_validate(self._call("GET", f"/admin/users/{username}/quota"))

    def set_user_quota(self, username: str, limits: QuotaSet) -> QuotaPublic:
        """Replace a user's own limits (administrators only); a limit left empty takes the
        server's default."""
        body = limits.model_dump(mode="json")
        return QuotaPublic.model_validate(
            self._call("PUT", f"/admin/users/{username}/quota", json=body)
        )

    def create_token(self, name: str) -> dict[str, Any]:
        """A new API token; its secret (`token`) is returned only this once."""
        token: dict[str, Any] = self._call("POST", "/tokens", json={"name": name})
        return token

    def list_tokens(self) -> list[dict[str, Any]]:
        tokens: list[dict[str, Any]] = self._call("GET", "/tokens")
        return tokens

    def revoke_token(self, token_id: str) -> None:
        self._call("DELETE", f"/tokens/{token_id}")
