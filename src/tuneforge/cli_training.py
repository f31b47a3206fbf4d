"""`tuneforge runs` and `tuneforge models`: launch, estimate, follow, resume, clone and compare
training runs, and list the models they made, through a running server's API.

A run's settings come from a YAML config (a preset is a good start) and from typed options made
from the trainers' specs (`cli_spec.py`): `runs start --base-model gemma-3-270m --dataset ID
--lora-r 8`; `--trainer` chooses the method (default `sft`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tuneforge.cli_common import (
    JsonFlag,
    api,
    api_group,
    describe_event,
    echo_json,
    fail,
    print_table,
    when,
)
from tuneforge.cli_spec import spec_values, with_spec_options

if TYPE_CHECKING:
    from tuneforge.client import Client
    from tuneforge.schemas.jobs import JobPublic

runs_app = api_group("Launch, follow, resume and compare training runs through a server's API.")
models_app = api_group("List, inspect and delete fine-tuned models through a server's API.")

RunId = Annotated[str, typer.Argument(help="The run's id (its job id).", show_default=False)]
Wait = Annotated[bool, typer.Option(help="Follow the run until it ends, or only start it.")]
#: The metrics `runs metrics` shows, those a run reports (preference runs report rewards and
#: accuracy, GRPO its reward and KL).
SHOWN = (
    "loss",
    "eval_loss",
    "perplexity",
    "token_accuracy",
    "rewards/accuracy",
    "rewards/margin",
    "eval_rewards/accuracy",
    "eval_rewards/margin",
    "reward",
    "reward_std",
    "kl",
    "eval_reward",
    "learning_rate",
    "tokens_per_second",
)


def _spec(config: Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    """A spec from a YAML or JSON file (a preset is a good start) and the options given,
    checked by its trainer's spec."""
    import yaml

    from tuneforge.yaml_numbers import safe_load

    values: Any = {}
    if config is not None:
        try:
            values = safe_load(config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            fail(f"Cannot read {config}: {exc}")
        if not isinstance(values, dict):
            fail(f"{config} must hold a mapping of settings.")
    return spec_values(values, settings)


def _follow(client: Client, job: JobPublic) -> None:
    """Print the run's progress, evaluations and logs until it ends; exit 1 unless it succeeded."""
    for event in client.events(job.id):
        if event["type"] == "metric" and not any(
            k.startswith("eval") for k in event["data"]["values"]
        ):
            continue  # every step's metrics are in `runs metrics`; evaluations are shown
        if event["type"] != "end":
            typer.echo(describe_event(event))
    done = client.get_job(job.id)
    typer.echo(f"Run {done.id} {done.status}" + (f": {done.error}" if done.error else "."))
    if done.result and done.result.get("model_id"):
        typer.echo(f"Model: {done.result['model_id']}")
    raise typer.Exit(0 if done.status == "succeeded" else 1)


Config = Annotated[
    Path | None,
    typer.Argument(help="A YAML spec (see `runs preset`).", exists=True, dir_okay=False),
]


@runs_app.command()
@with_spec_options
def start(
    ctx: typer.Context, settings: dict[str, Any], config: Config = None, wait: Wait = True
) -> None:
    """Launch a training run from a spec file and/or the settings' options."""
    spec = _spec(config, settings)
    with api(ctx) as client:
        job = client.train(spec)
        typer.echo(f"Run {job.id} queued.")
        if wait:
            _follow(client, job)


@runs_app.command()
@with_spec_options
def estimate(
    ctx: typer.Context,
    settings: dict[str, Any],
    config: Config = None,
    as_json: JsonFlag = False,
) -> None:
    """Estimate memory and duration of a run on the server's machine, with recommendations."""
    spec = _spec(config, settings)
    with api(ctx) as client:
        result = client.estimate(spec)
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    e = result.estimate
    print_table(
        [
            ("fits", "yes" if e.fits else "NO"),
            (
                "peak memory",
                f"{e.peak_memory_bytes / 1e9:.1f} GB of {e.available_memory_bytes / 1e9:.1f} GB",
            ),
            (
                "duration",
                f"{e.duration_seconds / 60:.1f} min" + ("" if e.calibrated else " (rough)"),
            ),
            ("steps", e.steps),
            ("device", f"{e.device}, {e.precision}"),
        ]
    )
    for message in e.messages:
        typer.echo(f"note: {message}")
    if e.refusal:
        typer.echo(f"refused: {e.refusal}")
    for check in result.checks:
        typer.echo(f"{'refused' if check.severity == 'refusal' else 'warning'}: {check.message}")
    for item in result.recommendations:
        typer.echo(f"recommend {item.field}={json.dumps(item.value)}: {item.reason}")


@runs_app.command("list")
def list_runs(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Your training runs, newest first."""
    with api(ctx) as client:
        jobs = client.list_jobs(kind="train")
    if as_json:
        echo_json(jobs.model_dump(mode="json"))
        return
    rows = [
        [j.id, j.spec.get("base_model", ""), j.status, f"{j.progress:.0%}", when(j.created_at)]
        for j in jobs.items
    ]
    print_table(rows, ["ID", "MODEL", "STATUS", "PROGRESS", "CREATED"])


@runs_app.command()
def metrics(ctx: typer.Context, run_id: RunId, as_json: JsonFlag = False) -> None:
    """A run's latest metrics (`--json`: every series and the sample answers)."""
    with api(ctx) as client:
        found = client.metrics(run_id)
    if as_json:
        echo_json(found.model_dump(mode="json"))
        return
    rows = [
        (name, f"{points[-1][1]:.4g} at step {points[-1][0]}")
        for name in SHOWN
        if (points := found.series.get(name))
    ]
    print_table(rows)
    if found.samples:
        latest = found.samples[-1]
        for item in latest.items:
            typer.echo(f"step {latest.step}: {item['prompt']!r} -> {item['answer']!r}")


@runs_app.command()
def resume(ctx: typer.Context, run_id: RunId, wait: Wait = True) -> None:
    """Resume a failed or cancelled run from its newest checkpoint."""
    with api(ctx) as client:
        job = client.resume(run_id)
        typer.echo(f"Run {job.id} queued again (attempt {job.attempt}).")
        if wait:
            _follow(client, job)


@runs_app.command()
@with_spec_options
def clone(ctx: typer.Context, run_id: RunId, settings: dict[str, Any], wait: Wait = True) -> None:
    """Launch a new run with another run's settings, changed by the settings' options."""
    with api(ctx) as client:
        job = client.clone(run_id, **settings)
        typer.echo(f"Run {job.id} queued.")
        if wait:
            _follow(client, job)


@runs_app.command()
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    as_json: JsonFlag = False,
) -> None:
    """Runs side by side: final metrics and the settings that differ."""
    with api(ctx) as client:
        found = client.compare(run_ids)
    if as_json:
        echo_json(found.model_dump(mode="json"))
        return
    headers = ["", *[run.job_id for run in found.runs]]
    rows: list[list[object]] = [["status", *[run.status for run in found.runs]]]
    for name in ("loss", "eval_loss"):
        rows.append(
            [
                name,
                *[
                    f"{r.series[name][-1][1]:.4g}" if r.series.get(name) else "-"
                    for r in found.runs
                ],
            ]
        )
    rows += [[key, *[json.dumps(v) for v in values]] for key, values in found.differences.items()]
    print_table(rows, headers)


@runs_app.command()
def presets(
    ctx: typer.Context,
    trainer: Annotated[
        str | None, typer.Option(help="Only this trainer's presets (sft, dpo, grpo...).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The presets: a good start for each model, trainer and method."""
    with api(ctx) as client:
        found = client.presets(trainer)
    if as_json:
        echo_json(found)
        return
    rows = [[p["id"], p["trainer"], p.get("title", "")] for p in found]
    print_table(rows, ["PRESET", "TRAINER", "FOR"])


@runs_app.command()
def preset(
    ctx: typer.Context, preset_id: Annotated[str, typer.Argument(help="The preset.")]
) -> None:
    """Print a preset's settings as YAML (add `dataset_id`, then `runs start` it)."""
    import yaml

    with api(ctx) as client:
        values = client.preset(preset_id)
    typer.echo(yaml.safe_dump(values, sort_keys=False), nl=False)


# -- models ---------------------------------------------------------------------------------------
ModelId = Annotated[str, typer.Argument(help="The model's id.", show_default=False)]


@models_app.command("list")
def list_models(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Your fine-tuned models, newest first."""
    with api(ctx) as client:
        found = client.list_models()
    if as_json:
        echo_json(found.model_dump(mode="json"))
        return
    rows = [
        [
            m.id,
            m.name,
            m.base_model,
            m.kind,
            f"{m.metrics.get('eval_loss', m.metrics.get('loss', 0)):.4g}",
            when(m.created_at),
        ]
        for m in found.items
    ]
    print_table(rows, ["ID", "NAME", "BASE", "KIND", "LOSS", "CREATED"])


@models_app.command()
def show(ctx: typer.Context, model_id: ModelId, as_json: JsonFlag = False) -> None:
    """One model: where it came from, its metrics and files."""
    with api(ctx) as client:
        model = client.get_model(model_id)
    if as_json:
        echo_json(model.model_dump(mode="json"))
        return
    print_table(
        [
            ("id", model.id),
            ("name", model.name),
            ("base model", model.base_model),
            ("kind", model.kind),
            ("started from", model.started_from or "-"),
            ("dataset", model.dataset_id or "-"),
            ("run", model.job_id or "-"),
            ("metrics", ", ".join(f"{k} {v:.4g}" for k, v in model.metrics.items())),
            ("files", ", ".join(model.files)),
            ("size", f"{model.size_bytes / 1e6:.1f} MB"),
            ("created", when(model.created_at)),
        ]
    )


@models_app.command()
def delete(ctx: typer.Context, model_id: ModelId) -> None:
    """Delete a model and its files (its run stays)."""
    with api(ctx) as client:
        client.delete_model(model_id)
    typer.echo(f"Model {model_id} deleted.")


@models_app.command()
def chat(
    ctx: typer.Context,
    model_id: Annotated[
        str, typer.Argument(help="A catalog id or one of your model ids.", show_default=False)
    ],
    message: Annotated[
        str | None, typer.Argument(help="One message to answer; omit to chat turn by turn.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    temperature: Annotated[
        float | None,
        typer.Option(min=0, max=2, help="0: greedy. Default: the model's (see docs/chat.md)."),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, max=8192, help="Default: the model's.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Same seed, same answer.")] = None,
) -> None:
    """Chat with a model, the answer streamed as it is written (an empty line ends a chat).
    Sampling left out is the model's default: greedy and short for a pre-trained base and its
    fine-tunes, Gemma's recommended sampling for an instruction-tuned model."""
    given = {
        "system": system,
        "seed": seed,
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
    }
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    messages: list[dict[str, str]] = []
    with api(ctx) as client:
        while True:
            text = message if message is not None else typer.prompt("you", default="")
            if not text.strip():
                return
            messages.append({"role": "user", "content": text})
            answer = []
            for event in client.chat_stream(model_id, messages, **params):
                if event["type"] == "delta":
                    answer.append(event["text"])
                    typer.echo(event["text"], nl=False)
            typer.echo()
            if message is not None:
                return
            messages.append({"role": "assistant", "content": "".join(answer)})


@models_app.command()
def catalog(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The base models that can be fine-tuned."""
    with api(ctx) as client:
        entries = client.catalog()
    if as_json:
        echo_json(entries)
        return
    rows = [
        [
            e["id"],
            e["name"],
            f"{e['parameters'] / 1e6:,.0f}M",
            e["modality"],
            "offline" if e["offline"] else "hub",
            e.get("availability", {}).get("state", "-"),
        ]
        for e in entries
    ]
    print_table(rows, ["ID", "NAME", "PARAMETERS", "MODALITY", "SOURCE", "HERE"])
