"""The web UI (NiceGUI), mounted on the same FastAPI app; pages call services, not HTTP."""

from fastapi import FastAPI

BRAND_COLOR = "#4f46e5"


def mount(app: FastAPI) -> None:
    """Attach the UI pages to `app` (once per process: NiceGUI's pages are global)."""
    from nicegui import app as nicegui_app
    from nicegui import ui

    from tuneforge.ui import backend, routes

    backend.bind(app)
    # Importing the page modules registers their pages.
    # `compare` (`/runs/compare`) before `run` (`/runs/{job_id}`), which would take its path.
    from tuneforge.ui import (  # noqa: F401
        compare,
        dataset,
        datasets,
        evaluation,
        evaluations,
        home,
        job,
        jobs,
        login,
        model,
        models,
        playground,
        run,
        settings_page,
        train,
    )

    # Before the UI takes over "/", so that these plain routes are matched first.
    app.include_router(routes.router)
    nicegui_app.colors(primary=BRAND_COLOR)
    ui.button.default_props("no-caps")
    ui.run_with(
        app,
        title="TuneForge",
        favicon="✨",
        language="en-US",
        storage_secret=app.state.settings.session_secret,
        show_welcome_message=False,
    )
