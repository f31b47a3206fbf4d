"""`/login`: a plain HTML form that posts to `/auth/login` (see `routes.py`)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tuneforge.ui.backend import current_user, state
from tuneforge.ui.routes import safe_next

ERRORS = {
    "unauthenticated": "Wrong user name or password.",
    "rate_limited": "Too many failed logins. Wait a minute and try again.",
}


@ui.page("/login", title="Log in · TuneForge")
async def login_page(
    request: Request, next: str = "/", error: str = "", username: str = ""
) -> RedirectResponse | None:
    target = safe_next(next)
    if state().settings.auth_mode != "local" or await current_user(request) is not None:
        return RedirectResponse(target)
    ui.query("body").classes("bg-grey-2")
    with ui.column().classes("absolute-center items-center gap-4 w-full max-w-sm q-px-md"):
        with ui.row().classes("items-center gap-2"):
            ui.icon("auto_awesome", color="primary", size="md")
            ui.label("TuneForge").classes("text-h5 text-weight-bold text-grey-9")
        with ui.card().classes("w-full q-pa-lg gap-4"):
            ui.label("Log in to your studio").classes("text-subtitle1 text-weight-medium")
            if error:
                with ui.row().classes(
                    "w-full items-center no-wrap gap-2 q-pa-sm rounded-borders "
                    "bg-red-1 text-negative"
                ):
                    ui.icon("error_outline")
                    ui.label(ERRORS.get(error, "Logging in failed; try again.")).classes(
                        "login-error"
                    )
            with (
                ui.element("form")
                .props('method=post action="/auth/login"')
                .classes("column w-full gap-3")
            ):
                name = ui.input("User name", value=username).props(
                    "name=username autocomplete=username outlined"
                )
                password = ui.input("Password", password=True, password_toggle_button=True)
                password.props("name=password autocomplete=current-password outlined")
                for field in (name, password):
                    field.classes("w-full")
                (password if username else name).props("autofocus")
                ui.element("input").props("type=hidden name=next").props["value"] = target
                ui.button("Log in").props("type=submit unelevated size=md").classes(
                    "w-full q-mt-sm"
                )
        ui.label("Ask your administrator if you have no account yet.").classes(
            "text-caption text-grey-7"
        )
    return None
