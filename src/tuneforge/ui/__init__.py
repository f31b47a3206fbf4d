"""The web UI (NiceGUI), mounted on the same FastAPI app; pages call services, not HTTP."""

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Attach the UI pages to `app`."""
