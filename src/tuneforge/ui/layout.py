"""The shell around every signed-in page (header, navigation, user menu) and its building blocks."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import ui

from tuneforge.db.tables import User
from tuneforge.ui.backend import current_user, login_url, state

Builder = Callable[..., Awaitable[None]]

#: The rules every page shares: long unbroken text (ids, paths, a model's run-on answer) wraps
#: instead of widening the page; focus is visible for keyboard users; on a phone, tables scroll
#: inside themselves and nothing makes the page wider than the screen. In the `components`
#: layer: after Quasar's, before Tailwind's utilities (so a page's own classes still win).
#: Quasar's buttons keep `outline: 0 !important`, so theirs is a ring of shadow.
CSS = """
@layer components {
body { overflow-wrap: anywhere; }
.q-card, .q-item__section, .q-message-text, .q-field__control, .q-field__native, .tf-wrap,
.nicegui-row > *, .nicegui-column > * { min-width: 0; }
.q-badge, .q-btn__content { overflow-wrap: normal; }
.q-badge { white-space: nowrap; }
.nicegui-markdown pre, .nicegui-code pre, .q-message-text pre, .nicegui-log {
  white-space: pre-wrap; }
.q-table td .tf-wrap { white-space: normal; display: block; min-width: 8rem; max-width: 24rem; }
.q-table__container, .q-table__middle { max-width: 100%; }
.app-content > * { max-width: 100%; }
.app-user .q-btn__content > span { max-width: 30vw; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
a:focus-visible, button:focus-visible, [tabindex]:focus-visible, .q-item:focus-visible {
  outline: 2px solid var(--q-primary); outline-offset: 2px; }
.q-btn:focus-visible { box-shadow: 0 0 0 2px #fff, 0 0 0 4px var(--q-primary); }
.home-action .q-btn__content, .home-also .q-btn__content {
  white-space: normal; overflow-wrap: anywhere; text-align: left; }
}
"""

NAVIGATION = (
    ("Home", "home", "/"),
    ("Datasets", "table_chart", "/datasets"),
    ("Train", "model_training", "/train"),
    ("Jobs", "work_history", "/jobs"),
    ("Models", "inventory_2", "/models"),
    ("Playground", "forum", "/playground"),
    ("Evaluations", "rule", "/evaluations"),
    ("Settings", "settings", "/settings"),
)


def page(path: str, title: str) -> Callable[[Builder], Builder]:
    """Register `build(user, **path_params)` as a signed-in page at `path`, inside the shell.

    Whoever is not signed in is sent to the login page, and comes back here afterwards.
    """

    def register(build: Builder) -> Builder:
        async def serve(request: Request, **params: Any) -> RedirectResponse | None:
            user = await current_user(request)
            if user is None:
                if state().settings.auth_mode == "local":
                    return RedirectResponse(login_url(request))
                _not_identified()
                return None
            with frame(user, path):
                await build(user, **params)
            return None

        # NiceGUI and FastAPI read the route's parameters from the signature: the request and the
        # builder's path parameters (the user is ours to supply).
        parameters = [
            p
            for p in inspect.signature(build, eval_str=True).parameters.values()
            if p.name != "user"
        ]
        request = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
        )
        serve.__signature__ = inspect.Signature([request, *parameters])  # type: ignore[attr-defined]
        ui.page(path, title=f"{title} · TuneForge")(serve)
        return build

    return register


def _not_identified() -> None:
    """In `header` mode nobody logs in here: the gateway in front must say who is asking."""
    ui.status_code(401)
    EmptyState(
        "lock",
        "Who are you?",
        "This studio relies on the gateway in front of it to say who you are, and this request "
        "came without that. Open the studio through your organisation's usual address.",
    ).classes("absolute-center")


@contextmanager
def frame(user: User, path: str) -> Iterator[None]:
    """Header, navigation drawer and a centred content column for the page at `path`."""
    ui.query("body").classes("bg-grey-1")
    ui.add_css(CSS)
    # Below Quasar's breakpoint (1024 px) the drawer starts closed and opens over the page.
    with ui.left_drawer(bordered=True).props("width=220").classes("bg-white q-pa-none") as drawer:
        _navigation(path)
    with ui.header(bordered=True).classes(
        "bg-white text-grey-9 items-center no-wrap q-px-md q-py-sm gap-2"
    ):
        ui.button(icon="menu", on_click=drawer.toggle).props(
            'flat round dense aria-label="Menu"'
        ).classes("lg:hidden app-menu")
        with (
            ui.link(target="/")
            .classes("row items-center no-wrap gap-2 no-underline app-logo")
            .props('aria-label="TuneForge home"')
        ):
            ui.icon("auto_awesome", color="primary", size="sm")
            ui.label("TuneForge").classes("text-h6 text-weight-bold text-grey-9")
        ui.space()
        _user_menu(user)
    with ui.column().classes("w-full max-w-6xl mx-auto q-pa-md gap-6 app-content"):
        yield


def _navigation(path: str) -> None:
    with ui.list().props("padding").classes("w-full"):
        for label, icon, target in NAVIGATION:
            active = path == target or path.startswith(target + "/")
            with (
                ui.item()
                .props(f"clickable href={target}")
                .props("active active-class='text-primary bg-indigo-1'" if active else "")
                .classes("rounded-r-full q-mr-sm")
            ):
                with ui.item_section().props("avatar"):
                    ui.icon(icon)
                ui.item_section(label).classes("text-weight-medium")


def _user_menu(user: User) -> None:
    button = (
        ui.button(user.username, icon="account_circle")
        .props("flat no-caps color=grey-9")
        .classes("app-user")
    )
    with button, ui.menu().props("anchor='bottom right' self='top right'"), ui.list():
        with ui.item(), ui.item_section():
            ui.item_label(user.username).classes("text-weight-medium")
            ui.item_label("Administrator" if user.is_admin else "User").props("caption")
        ui.separator()
        _menu_link("API tokens", "key", "/settings#tokens")
        _menu_link("Settings", "settings", "/settings")
        if state().settings.auth_mode == "local":
            ui.separator()
            # A real form: only an HTTP response can clear the HttpOnly session cookie.
            with (
                ui.element("form").props('method=post action="/auth/logout"'),
                ui.item()
                .props("clickable tag=button type=submit role=button")
                .classes("w-full text-left"),
            ):
                with ui.item_section().props("avatar"):
                    ui.icon("logout")
                ui.item_section("Log out")


def _menu_link(label: str, icon: str, target: str) -> None:
    with ui.item().props(f"clickable v-close-popup href={target}"):
        with ui.item_section().props("avatar"):
            ui.icon(icon)
        ui.item_section(label)


def heading(title: str, subtitle: str | None = None) -> ui.row:
    """The page's title line; actions entered into the returned row sit on the right."""
    row = ui.row().classes("w-full items-end justify-between gap-4")
    with row, ui.column().classes("gap-1 flex-1 min-w-[16rem]"):
        ui.label(title).classes("text-h5 text-weight-medium text-grey-10")
        if subtitle:
            ui.label(subtitle).classes("text-body2 text-grey-7")
    return row


async def confirm(question: str, consequence: str, action: str) -> bool:
    """Ask before something that cannot be undone; True if the user chose `action`."""
    with ui.dialog() as dialog, ui.card().classes("q-pa-lg gap-4 max-w-md"):
        ui.label(question).classes("text-h6")
        ui.label(consequence).classes("text-body2 text-grey-8")
        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=lambda: dialog.submit(False)).props("flat")
            ui.button(action, on_click=lambda: dialog.submit(True)).props(
                "unelevated color=negative"
            )
    answer = await dialog
    dialog.delete()
    return answer is True


class EmptyState(ui.column):
    """A friendly placeholder: what would be here, and what to do instead."""

    def __init__(self, icon: str, title: str = "", text: str = "") -> None:
        super().__init__()
        self.classes("w-full items-center text-center gap-2 q-py-xl")
        with self:
            ui.icon(icon, size="3rem", color="grey-5")
            self.title_label = ui.label(title).classes("text-h6 text-grey-9")
            self.text_label = ui.label(text).classes("text-body1 text-grey-7 max-w-xl")

    def show(self, title: str, text: str) -> None:
        self.title_label.set_text(title)
        self.text_label.set_text(text)
