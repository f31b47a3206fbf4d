"""The model page's exports: the Export dialog (format, quantisation with sizes, destination)
and the live list of the model's exports with their checks and download buttons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import ui
from pydantic import TypeAdapter, ValidationError

from tuneforge.data.limits import size_text
from tuneforge.db.tables import Export, Job, Model, User
from tuneforge.export.destinations import Destination, describe
from tuneforge.export.spec import FORMAT_HELP, VISION_HELP, ExportRequest
from tuneforge.services import exports as service
from tuneforge.services import jobs as job_service
from tuneforge.ui.backend import call, read, reported, state
from tuneforge.ui.formatting import status_color, when

REFRESH_SECONDS = 1.0
DESTINATION: TypeAdapter[Destination] = TypeAdapter(Destination)
FORMAT_NAMES = {
    "adapter": "Adapter (LoRA, PEFT)",
    "merged": "Merged model (safetensors)",
    "gguf": "GGUF (llama.cpp)",
    "ollama": "Ollama (GGUF + Modelfile)",
}
DESTINATIONS = {
    "download": "Keep here to download",
    "s3": "Amazon S3 (or S3-compatible)",
    "gcs": "Google Cloud Storage",
    "hub": "Hugging Face Hub",
    "directory": "A directory on this server",
}


def verification_text(verification: dict[str, Any] | None) -> str:
    """What the built-in checks found, in a line."""
    if not verification:
        return ""
    parts = []
    merge = verification.get("merge", {})
    if "max_abs_logit_diff" in merge:
        parts.append(
            "merged logits match base + adapter (largest difference "
            f"{merge['max_abs_logit_diff']:.1e})"
        )
    image = merge.get("image")
    if image:
        parts.append(
            "the merged model's greedy answer to an image prompt is base + adapter's"
            if image.get("same_answer")
            else "the merged model answers an image prompt differently"
        )
    gguf = verification.get("gguf", {})
    if gguf.get("forced_agreement") is not None:
        steps = gguf["greedy_tokens"] * len(gguf["forced_agreement"])
        parts.append(
            f"llama.cpp picks transformers' token at {sum(gguf['forced_agreement'])} of "
            f"{steps} steps"
        )
    elif gguf:
        parts.append(f"GGUF read back ({gguf.get('tensor_count')} tensors, tokenizer)")
    projector = gguf.get("image")
    if projector:
        parts.append(projector_text(projector))
    return ("Checked: " + "; ".join(parts)) if parts else ""


def projector_text(image: dict[str, Any]) -> str:
    """What the check of a vision GGUF's mmproj projector found."""
    what = f"mmproj projector ({image.get('tokens_per_image')} tokens per image)"
    if image.get("forced_agreement") is not None:
        text = (
            f"{what} read an image in llama.cpp: its token matches transformers' at "
            f"{image['forced_agreement']} of {image['greedy_tokens']} steps"
        )
        if image.get("image_effect"):
            text += (
                f", logits within {image['logit_diff']:.2g} where the image moves them by "
                f"{image['image_effect']:.2g}"
            )
        if image.get("text_model"):
            text += ", beside the unquantized text model"
        return text
    return f"{what} structure checked" + (f" ({image['note']})" if image.get("note") else "")


def _destination_label(export: Export) -> str:
    return describe(DESTINATION.validate_python(export.destination))


def exports_card(user: User, model: Model) -> Callable[[], Awaitable[None]]:
    """The list of the model's exports, refreshed while any is unfinished; returns `reload`."""
    with ui.card().classes("w-full q-pa-lg gap-3 model-exports"):
        ui.label("Exports").classes("text-subtitle1 text-weight-medium")
        listing = ui.column().classes("w-full gap-2")

    async def reload() -> None:
        exports = await read(service.list_exports, user, model.id)
        jobs = {
            e.id: await read(job_service.get_job, user, e.job_id)
            for e in exports
            if e.status in service.UNFINISHED and e.job_id
        }
        listing.clear()
        with listing:
            if not exports:
                ui.label(
                    "No exports yet. Export makes files Ollama, llama.cpp, transformers or vLLM "
                    "run, checked before they are offered."
                ).classes("text-body2 text-grey-7 exports-empty")
            for export in exports:
                _row(export, jobs.get(export.id))
        timer.active = any(e.status in service.UNFINISHED for e in exports)

    timer = ui.timer(REFRESH_SECONDS, reload, active=False)
    return reload


def _row(export: Export, job: Job | None) -> None:
    name = FORMAT_NAMES[export.format] + (
        f" · {export.quantization}" if export.quantization else ""
    )
    with ui.row().classes("w-full items-center gap-3 export-row no-wrap"):
        ui.badge(export.status).props(f"color={status_color(export.status)}").classes(
            "export-status"
        )
        with ui.column().classes("gap-0 col"):
            ui.label(name).classes("text-body2 text-weight-medium")
            details = [_destination_label(export), when(export.created_at)]
            if export.size_bytes:
                details.insert(1, size_text(export.size_bytes))
            ui.label(" · ".join(details)).classes("text-caption text-grey-7")
            if job is not None:
                ui.linear_progress(value=job.progress, show_value=False).classes("q-mt-xs")
                ui.label(job.message or "waiting for a worker").classes(
                    "text-caption text-grey-7 export-progress"
                )
            if export.status == "failed" and export.error:
                ui.label(export.error).classes("text-caption text-negative export-error")
            checked = verification_text(export.verification)
            if checked:
                ui.label(checked).classes("text-caption text-positive export-verification")
            if export.location:
                ui.label(export.location).classes("text-caption font-mono")
        if export.status == "succeeded":
            url = f"/api/v1/exports/{export.id}/download"
            ggufs = [f["name"] for f in export.files if f["name"].endswith(".gguf")]
            main = next((n for n in ggufs if not n.startswith("mmproj")), None)
            projector = next((n for n in ggufs if n.startswith("mmproj")), None)
            buttons = (
                (".gguf", main, "export-download-file"),
                ("mmproj", projector, "export-download-projector"),
            )
            for label, file, css in buttons:
                if file is not None:
                    ui.button(
                        label,
                        icon="download",
                        on_click=lambda u=url, m=file: ui.download(f"{u}?file={m}"),
                    ).props("outline dense").classes(css)
            ui.button("ZIP", icon="folder_zip", on_click=lambda u=url: ui.download(u)).props(
                "outline dense"
            ).classes("export-download-zip")


async def open_export_dialog(
    user: User, model: Model, on_created: Callable[[], Awaitable[None]]
) -> None:
    """Ask how to export `model`, then queue the export."""
    found = await read(service.estimates, user, state().settings, model.id)
    choices, vision = found["choices"], bool(found.get("vision"))
    formats = list(dict.fromkeys(c["format"] for c in choices))

    def quantizations(export_format: str) -> dict[str, str]:
        return {
            c["quantization"]: f"{c['quantization']} · about {size_text(c['bytes'])}"
            for c in choices
            if c["format"] == export_format and c["quantization"]
        }

    def size_of(export_format: str, quantization: str | None) -> int:
        return next(
            int(c["bytes"])
            for c in choices
            if c["format"] == export_format and (c["quantization"] or None) == quantization
        )

    destinations = {k: v for k, v in DESTINATIONS.items() if k != "directory" or user.is_admin}
    with ui.dialog() as dialog, ui.card().classes("w-[36rem] q-pa-lg gap-3 export-dialog"):
        ui.label(f"Export {model.name}").classes("text-h6")
        fmt = ui.select(
            {f: FORMAT_NAMES[f] for f in formats}, value=formats[0], label="Format"
        ).classes("w-full export-format")
        help_text = ui.label().classes("text-caption text-grey-7")
        quant = ui.select({}, label="Quantisation").classes("w-full export-quantization")
        size = ui.label().classes("text-body2 export-size")
        where = ui.select(destinations, value="download", label="Destination").classes(
            "w-full export-destination"
        )
        url = ui.input("Bucket URL", placeholder="s3://bucket/models/my-model").classes(
            "w-full export-url"
        )
        endpoint = ui.input("Endpoint URL (S3-compatible services; optional)").classes("w-full")
        repo = ui.input("Repository", placeholder="your-name/my-gemma").classes(
            "w-full export-repo"
        )
        private = ui.checkbox("Private repository", value=True)
        path = ui.input("Server directory", placeholder="/srv/models/my-gemma").classes("w-full")
        secrets_hint = ui.label().classes("text-caption text-grey-7")

        def update() -> None:
            export_format = fmt.value
            help_text.set_text(
                FORMAT_HELP[export_format] + (f" {VISION_HELP[export_format]}" if vision else "")
            )
            options = quantizations(export_format)
            quant.set_options(
                options,
                value=quant.value
                if quant.value in options
                else ("q8_0" if "q8_0" in options else None),
            )
            quant.set_visibility(bool(options))
            estimated = size_of(export_format, quant.value if options else None)
            size.set_text(f"Estimated size: {size_text(estimated)}")
            kind = where.value
            url.set_visibility(kind in ("s3", "gcs"))
            endpoint.set_visibility(kind == "s3")
            repo.set_visibility(kind == "hub")
            private.set_visibility(kind == "hub")
            path.set_visibility(kind == "directory")
            needs = {
                "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                "gcs": "GCS_CREDENTIALS (a service-account JSON)",
                "hub": "HF_TOKEN (a token with write access)",
            }.get(kind)
            secrets_hint.set_text(
                f"Uses your secrets {needs} (Settings, Secrets)." if needs else ""
            )

        for element in (fmt, quant, where):
            element.on_value_change(update)
        update()

        def destination() -> dict[str, Any]:
            kind = where.value
            if kind in ("s3", "gcs"):
                found: dict[str, Any] = {"kind": kind, "url": (url.value or "").strip()}
                if kind == "s3" and (endpoint.value or "").strip():
                    found["endpoint_url"] = endpoint.value.strip()
                return found
            if kind == "hub":
                return {
                    "kind": kind,
                    "repo_id": (repo.value or "").strip(),
                    "private": private.value,
                }
            if kind == "directory":
                return {"kind": kind, "path": (path.value or "").strip()}
            return {"kind": "download"}

        async def start() -> None:
            try:
                request = ExportRequest.model_validate(
                    {
                        "format": fmt.value,
                        "quantization": quant.value if quantizations(fmt.value) else None,
                        "destination": destination(),
                    }
                )
            except ValidationError as exc:
                ui.notify(exc.errors()[0]["msg"], type="negative")
                return
            with reported():
                _, reused = await call(
                    service.create_export, state().store, user, state().settings, model.id, request
                )
                ui.notify(
                    "This export already exists: it is in the list."
                    if reused
                    else "Export started: follow it in the list.",
                    type="positive",
                )
                dialog.close()
                await on_created()

        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Export", icon="download", on_click=start).props("unelevated").classes(
                "export-start"
            )
    dialog.open()
