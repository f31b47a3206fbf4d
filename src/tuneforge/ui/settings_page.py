"""`/settings`: the signed-in account, its usage and quota, its API tokens and its secrets."""

from __future__ import annotations

from typing import Any

from nicegui import ui
from nicegui.events import GenericEventArguments

from tuneforge.db.tables import ApiToken, Secret, User
from tuneforge.services import accounts, secrets
from tuneforge.ui.backend import call, reported, state
from tuneforge.ui.formatting import when
from tuneforge.ui.layout import confirm, heading, page
from tuneforge.ui.settings_quota import quota_section

SIGN_IN = {
    "none": "None: this studio runs for one person on this machine.",
    "local": "User name and password.",
    "header": "By the gateway in front of the studio.",
}

TOKEN_COLUMNS = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "prefix", "label": "Starts with", "field": "prefix", "align": "left"},
    {"name": "created", "label": "Created", "field": "created", "align": "left"},
    {"name": "last_used", "label": "Last used", "field": "last_used", "align": "left"},
    {"name": "actions", "label": "", "field": "id", "align": "right"},
]

PREFIX_SLOT = """
    <q-td :props="props"><code class="text-grey-9">{{ props.value }}…</code></q-td>"""
REVOKE_SLOT = """
    <q-td :props="props">
      <q-btn flat dense no-caps color="negative" icon="delete" label="Revoke"
             @click="() => $parent.$emit('revoke', props.row)" />
    </q-td>"""
SECRET_COLUMNS = [
    {"name": "name", "label": "Name", "field": "name", "align": "left"},
    {"name": "updated", "label": "Set", "field": "updated", "align": "left"},
    {"name": "actions", "label": "", "field": "name", "align": "right"},
]
DELETE_SLOT = """
    <q-td :props="props">
      <q-btn flat dense no-caps color="negative" icon="delete" label="Delete"
             @click="() => $parent.$emit('delete', props.row)" />
    </q-td>"""


def _row(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created": when(token.created_at),
        "last_used": when(token.last_used_at) if token.last_used_at else "Never",
    }


@page("/settings", "Settings")
async def settings_page(user: User) -> None:
    heading("Settings", "Your account, the keys that let scripts act as you, and your secrets.")
    with ui.card().classes("w-full q-pa-lg gap-3"):
        ui.label("Account").classes("text-subtitle1 text-weight-medium")
        with ui.grid(columns="auto 1fr").classes("gap-x-8 gap-y-2 text-body2"):
            for name, value in (
                ("User name", user.username),
                (
                    "Role",
                    "Administrator: sees and manages everyone's work" if user.is_admin else "User",
                ),
                ("Member since", when(user.created_at)),
                ("Sign-in", SIGN_IN[state().settings.auth_mode]),
            ):
                ui.label(name).classes("text-grey-7")
                ui.label(value)
    await quota_section(user)
    await _tokens_section(user)
    await _secrets_section(user)


async def _tokens_section(user: User) -> None:
    with ui.card().classes("w-full q-pa-lg gap-4"):
        ui.link_target("tokens").classes("absolute")  # /settings#tokens, outside the flow
        ui.label("API tokens").classes("text-subtitle1 text-weight-medium")
        ui.markdown(
            "A token lets the Python client, the CLI or your own scripts use the API as you. "
            "Send it as `Authorization: Bearer tf_…`; revoke it when it is no longer needed."
        ).classes("text-body2 text-grey-8")
        with ui.row().classes("w-full items-start gap-3"):
            name = (
                ui.input("Token name", placeholder="e.g. laptop CLI")
                .props("outlined dense maxlength=100")
                .classes("w-72 token-name")
            )
            create = ui.button("Create token", icon="add").props("unelevated")
        table, none = _listing(TOKEN_COLUMNS, "id", "tokens-table", "No tokens yet.")
        table.add_slot("body-cell-prefix", PREFIX_SLOT)
        table.add_slot("body-cell-actions", REVOKE_SLOT)

    async def reload() -> None:
        _show(table, none, [_row(token) for token in await call(accounts.list_tokens, user)])

    async def create_token() -> None:
        with reported():
            _, secret = await call(accounts.create_token, user, name.value or "")
            name.set_value("")
            _show_secret(secret)
        await reload()

    async def revoke(event: GenericEventArguments) -> None:
        if not await confirm(
            f"Revoke the token {event.args['name']!r}?",
            "Scripts that use it stop working at once. This cannot be undone.",
            "Revoke",
        ):
            return
        with reported():
            await call(accounts.revoke_token, user, event.args["id"])
            ui.notify(f"Token {event.args['name']!r} revoked.")
        await reload()

    create.on_click(create_token)
    name.on("keydown.enter", create_token)
    table.on("revoke", revoke)
    await reload()


async def _secrets_section(user: User) -> None:
    with ui.card().classes("w-full q-pa-lg gap-4"):
        ui.link_target("secrets").classes("absolute")  # /settings#secrets
        ui.label("Secrets").classes("text-subtitle1 text-weight-medium")
        ui.markdown(
            "Keys that your runs use: `WANDB_API_KEY` and `MLFLOW_TRACKING_URI` for tracking, "
            "a judge's API key for evaluations, `HF_TOKEN`... They are stored encrypted and "
            "never shown again; set one again to replace it."
        ).classes("text-body2 text-grey-8")
        with ui.row().classes("w-full items-start gap-3"):
            name = (
                ui.input("Name", placeholder="e.g. WANDB_API_KEY")
                .props("outlined dense maxlength=64")
                .classes("w-72 secret-name")
            )
            value = (
                ui.input("Value", password=True, password_toggle_button=False)
                .props("outlined dense maxlength=4096 autocomplete=off")
                .classes("w-96 secret-value")
            )
            save = ui.button("Save secret", icon="lock").props("unelevated")
        table, none = _listing(SECRET_COLUMNS, "name", "secrets-table", "No secrets yet.")
        table.add_slot("body-cell-actions", DELETE_SLOT)

    async def reload() -> None:
        found = await call(secrets.list_secrets, user)
        _show(table, none, [_secret_row(secret) for secret in found])

    async def save_secret() -> None:
        with reported():
            saved = await call(
                secrets.set_secret, state().settings, user, name.value or "", value.value or ""
            )
            name.set_value("")
            value.set_value("")
            ui.notify(f"Secret {saved.name} saved.", type="positive")
        await reload()

    async def delete(event: GenericEventArguments) -> None:
        if not await confirm(
            f"Delete the secret {event.args['name']}?",
            "Runs that need it will fail until it is set again.",
            "Delete",
        ):
            return
        with reported():
            await call(secrets.delete_secret, user, event.args["name"])
            ui.notify(f"Secret {event.args['name']} deleted.")
        await reload()

    save.on_click(save_secret)
    value.on("keydown.enter", save_secret)
    table.on("delete", delete)
    await reload()


def _secret_row(secret: Secret) -> dict[str, Any]:
    return {"name": secret.name, "updated": when(secret.updated_at)}


def _show_secret(secret: str) -> None:
    """The new token, shown this once."""
    with ui.dialog().props("persistent") as dialog, ui.card().classes("w-[32rem] q-pa-lg gap-4"):
        ui.label("Your new API token").classes("text-h6")
        with ui.row().classes(
            "w-full items-center no-wrap gap-2 q-pa-sm rounded-borders bg-amber-1 text-brown-9"
        ):
            ui.icon("warning", color="warning")
            ui.label(
                "Copy it now: it will not be shown again. Anyone who has it can act as you."
            ).classes("text-body2")
        field = (
            ui.input(value=secret)
            .props("outlined readonly dense")
            .classes("w-full token-secret font-mono")
        )

        def copy() -> None:
            ui.clipboard.write(secret)
            ui.notify("Copied to the clipboard.", type="positive")

        with field.add_slot("append"):
            ui.button(icon="content_copy", on_click=copy).props("flat round dense").tooltip("Copy")
        with ui.row().classes("w-full justify-end"):
            ui.button("Done", on_click=dialog.close).props("unelevated")
    dialog.on("hide", dialog.delete)
    dialog.open()


def _listing(
    columns: list[dict[str, str]], row_key: str, css: str, empty: str
) -> tuple[ui.table, ui.label]:
    """A table of the user's items, and the line shown instead while there are none."""
    table = ui.table(columns=columns, rows=[], row_key=row_key).props("flat bordered")
    table.classes(f"w-full {css}")
    return table, ui.label(empty).classes("text-body2 text-grey-6")


def _show(table: ui.table, none: ui.label, rows: list[dict[str, Any]]) -> None:
    table.rows = rows
    table.update()
    table.set_visibility(bool(rows))
    none.set_visibility(not rows)
