"""`tuneforge exports`: export a fine-tuned model (adapter, merged, GGUF, Ollama) to a download,
a bucket or the Hugging Face Hub, list a model's exports and download their files, through a
running server's API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tuneforge.cli_common import JsonFlag, api, api_group, echo_json, fail, print_table
from tuneforge.data.limits import size_text

exports_app = api_group(
    "Export fine-tuned models as files Ollama, llama.cpp, transformers or vLLM run."
)
ModelId = Annotated[str, typer.Argument(help="The fine-tuned model's id.", show_default=False)]
ExportId = Annotated[str, typer.Argument(help="The export's id.", show_default=False)]


def _checks(verification: dict[str, Any] | None) -> str:
    if not verification:
        return "-"
    merge, gguf = verification.get("merge", {}), verification.get("gguf", {})
    parts = []
    if "max_abs_logit_diff" in merge:
        parts.append(f"merge max|dlogit| {merge['max_abs_logit_diff']:.1e}")
    if gguf.get("forced_agreement") is not None:
        steps = gguf["greedy_tokens"] * len(gguf["forced_agreement"])
        parts.append(f"llama.cpp = transformers at {sum(gguf['forced_agreement'])}/{steps} steps")
    return ", ".join(parts) or "-"


@exports_app.command()
def choices(ctx: typer.Context, model_id: ModelId, as_json: JsonFlag = False) -> None:
    """The formats and quantisations a model can be exported as, with estimated sizes."""
    with api(ctx) as client:
        found = client.export_choices(model_id)
    if as_json:
        echo_json(found)
        return
    rows = [
        [c["format"], c["quantization"] or "-", size_text(c["bytes"])] for c in found["choices"]
    ]
    print_table(rows, ["FORMAT", "QUANTIZATION", "ESTIMATED SIZE"])


@exports_app.command()
def start(
    ctx: typer.Context,
    model_id: ModelId,
    format: Annotated[str, typer.Option(help="adapter, merged, gguf or ollama.")],
    quantization: Annotated[
        str | None,
        typer.Option(help="gguf/ollama: f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m... [default: q8_0]"),
    ] = None,
    s3: Annotated[str | None, typer.Option(help="Deliver to s3://bucket/prefix.")] = None,
    s3_endpoint: Annotated[
        str | None, typer.Option(help="An S3-compatible service's endpoint URL.")
    ] = None,
    gcs: Annotated[str | None, typer.Option(help="Deliver to gs://bucket/prefix.")] = None,
    hub: Annotated[
        str | None, typer.Option(help="Deliver to this Hugging Face Hub repository (user/name).")
    ] = None,
    public: Annotated[bool, typer.Option(help="Make the Hub repository public.")] = False,
    directory: Annotated[
        str | None, typer.Option(help="Deliver into this server directory (administrators).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow it until it ends, or only start it.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Export a model. Credentials come from your stored secrets (`tuneforge secrets set`):
    AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3, GCS_CREDENTIALS, HF_TOKEN."""
    chosen = [d for d in (s3, gcs, hub, directory) if d]
    if len(chosen) > 1:
        fail("Choose one destination: --s3, --gcs, --hub or --directory.")
    destination: dict[str, Any] | None = None
    if s3:
        destination = {"kind": "s3", "url": s3, "endpoint_url": s3_endpoint}
    elif gcs:
        destination = {"kind": "gcs", "url": gcs}
    elif hub:
        destination = {"kind": "hub", "repo_id": hub, "private": not public}
    elif directory:
        destination = {"kind": "directory", "path": directory}
    with api(ctx) as client:
        export = client.export(model_id, format, quantization, destination)
        if export["reused"]:
            typer.echo(f"An identical export exists: {export['id']} ({export['status']}).")
        else:
            typer.echo(f"Export {export['id']} queued.")
        if wait:
            export = client.wait_export(export["id"])
    if as_json:
        echo_json(export)
        return
    if wait:
        _print(export)
    if export["status"] in ("failed", "cancelled"):
        fail(f"Export {export['id']} {export['status']}: {export['error']}")


def _print(export: dict[str, Any]) -> None:
    typer.echo(f"{export['id']}: {export['status']}, {size_text(export['size_bytes'])}")
    typer.echo(f"  checks: {_checks(export['verification'])}")
    if export["location"]:
        typer.echo(f"  delivered to {export['location']}")
    for file in export["files"]:
        typer.echo(f"  {file['name']}  {size_text(file['size'])}")


@exports_app.command("list")
def list_exports(ctx: typer.Context, model_id: ModelId, as_json: JsonFlag = False) -> None:
    """A model's exports, newest first."""
    with api(ctx) as client:
        found = client.list_exports(model_id)
    if as_json:
        echo_json(found)
        return
    rows = [
        [
            e["id"],
            e["format"] + (f" {e['quantization']}" if e["quantization"] else ""),
            e["status"],
            size_text(e["size_bytes"]),
            e["location"] or e["destination"]["kind"],
            _checks(e["verification"]),
        ]
        for e in found
    ]
    print_table(rows, ["ID", "FORMAT", "STATUS", "SIZE", "DESTINATION", "CHECKS"])


@exports_app.command()
def download(
    ctx: typer.Context,
    export_id: ExportId,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to save it.")],
    file: Annotated[
        str | None, typer.Option(help="One file of the export (default: all, as a ZIP).")
    ] = None,
) -> None:
    """Download an export (resumes a partial OUTPUT)."""
    with api(ctx) as client:
        path = client.download_export(export_id, output, file)
    typer.echo(f"Saved {path} ({size_text(path.stat().st_size)}).")


@exports_app.command()
def delete(ctx: typer.Context, export_id: ExportId) -> None:
    """Delete an export (its files too, unless an identical export shares them)."""
    with api(ctx) as client:
        client.delete_export(export_id)
    typer.echo(f"Deleted export {export_id}.")
