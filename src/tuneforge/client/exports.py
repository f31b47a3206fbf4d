"""Exports through the client: what a model can be exported as, export it, wait for the export
and download its files (a partial download continues where it stopped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.client.jobs import JobsClient


class ExportsClient(JobsClient):
    """The client's export methods."""

    def export_choices(self, model_id: str) -> dict[str, Any]:
        """Every format and quantisation `model_id` can be exported as, with estimated sizes."""
        choices: dict[str, Any] = self._call("GET", f"/models/{model_id}/export-choices")
        return choices

    def export(
        self,
        model_id: str,
        format: str,
        quantization: str | None = None,
        destination: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Export a model (`adapter`, `merged`, `gguf`, `ollama`) to a destination (default: a
        download kept on the server); an identical existing download comes back `reused`."""
        request: dict[str, Any] = {"format": format, "quantization": quantization}
        if destination is not None:
            request["destination"] = destination
        created: dict[str, Any] = self._call("POST", f"/models/{model_id}/exports", json=request)
        return created

    def list_exports(self, model_id: str) -> list[dict[str, Any]]:
        exports: list[dict[str, Any]] = self._call("GET", f"/models/{model_id}/exports")["items"]
        return exports

    def get_export(self, export_id: str) -> dict[str, Any]:
        export: dict[str, Any] = self._call("GET", f"/exports/{export_id}")
        return export

    def wait_export(self, export_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The export once it has ended (succeeded, failed or cancelled)."""
        export = self.get_export(export_id)
        if export["status"] in ("queued", "running") and export["job_id"]:
            self.wait(export["job_id"], timeout)
            export = self.get_export(export_id)
        return export

    def delete_export(self, export_id: str) -> None:
        self._call("DELETE", f"/exports/{export_id}")

    def download_export(
        self, export_id: str, path: str | Path, file: str | None = None, *, resume: bool = True
    ) -> Path:
        """Save one file of an export (`file`) or all of them as a ZIP at `path`; a partial
        `path` from an interrupted download is continued (`resume`)."""
        params = {"file": file} if file else None
        return self._save(f"/exports/{export_id}/download", Path(path), params, resume=resume)
