"""Your secrets through the client: set, list by name, delete; their values never come back."""

from __future__ import annotations

from typing import Any

from tuneforge.client.base import BaseClient


class SecretsClient(BaseClient):
    """The client's secret methods."""

    def set_secret(self, name: str, value: str) -> None:
        """Create or replace your secret `name` (`HF_TOKEN`, `WANDB_API_KEY`, ...); the server
        stores it encrypted and never returns it."""
        self._call("PUT", f"/secrets/{name}", json={"value": value})

    def list_secrets(self) -> list[dict[str, Any]]:
        """Your secrets' `name`, `created_at` and `updated_at` (never their values)."""
        secrets: list[dict[str, Any]] = self._call("GET", "/secrets")
        return secrets

    def delete_secret(self, name: str) -> None:
        self._call("DELETE", f"/secrets/{name}")
