"""`tuneforge evals`: launch an evaluation, follow it, read its metrics, browse and download its
samples, through a running server's API (the HTTP client is imported only when a command runs).
"""

from __future__ import annotations

import json
from enum import StrEnum
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
)

if TYPE_CHECKING:
    from tuneforge.client import Client
    from tuneforge.schemas.evaluations import EvaluationPublic, SamplePublic

evals_app = api_group(
    "Evaluate models on a dataset split (metrics, samples side by side) through a server's API."
)

EvalId = Annotated[
    str, typer.Argument(help="The evaluation's id (its job id).", show_default=False)
]
SHOWN_CHARS = 160  # of a prompt, reference or answer in `evals samples`


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _shorten(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _schema(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"Cannot read the JSON Schema {path}: {exc}")
    if not isinstance(schema, dict):
        fail(f"{path} must hold a JSON Schema object.")
    return schema


def _graders(given: list[str] | None) -> list[Any] | None:
    if not given:
        return None
    try:
        return [json.loads(grader) for grader in given]
    except ValueError as exc:
        fail(f"--graders: each value must be a JSON object ({exc}).")


def _print_results(found: EvaluationPublic) -> None:
    names = [f"{label} {m.name}" for label, m in zip("AB", found.models, strict=False)]
    typer.echo(
        f"{found.suite} on the {found.split} split of {found.dataset_id}: {found.count} samples"
        + (f" ({found.skipped} rows could not be used)" if found.skipped else "")
    )
    if found.judge_error:
        typer.echo(f"The judge could not grade the answers: {found.judge_error}", err=True)
    metrics = list(dict.fromkeys(name for row in found.metrics for name in row))
    if not metrics:
        typer.echo("No metrics (the vibe suite only collects answers): see `evals samples`.")
        return
    compared = found.comparison  # fine-tune vs base: positive when the fine-tune does better
    gains = compared.values if compared else {}
    headers = ["METRIC", *names, *([compared.label.upper()] if compared else [])]
    rows = [
        [
            metric,
            *(f"{row[metric]:.4g}" if metric in row else "-" for row in found.metrics),
            *([f"{gains[metric]:+.4g}" if metric in gains else "-"] if compared else []),
        ]
        for metric in metrics
    ]
    print_table(rows, headers)


def _follow(client: Client, job_id: str) -> None:
    """Print the evaluation's progress and logs until it ends, then its results; exit 1 unless
    it succeeded."""
    for event in client.events(job_id):
        if event["type"] != "end":
            typer.echo(describe_event(event))
    done = client.get_job(job_id)
    if done.status != "succeeded":
        fail(f"Evaluation {job_id} {done.status}" + (f": {done.error}" if done.error else "."))
    _print_results(client.evaluation(job_id))


@evals_app.command()
def start(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option(help="The model (A): a catalog id or one of your model ids.")
    ],
    dataset: Annotated[str, typer.Option(help="The processed dataset the samples come from.")],
    suite: Annotated[
        str,
        typer.Option(
            help="How answers are scored: classification, extraction, summarisation, "
            "translation, json, conversation, perplexity, rewards (graders score the answers), "
            "preference (how often the chosen answer is the likelier), tool_calls (right tools "
            "and arguments) or vibe (answers only)."
        ),
    ],
    compare_with: Annotated[
        str | None, typer.Option(help="A second model (B); the results show fine-tune vs base.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="test or train [default: test].")] = None,
    max_samples: Annotated[
        int | None, typer.Option(min=1, help="At most this many samples [default: 200].")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seeds the choice of samples.")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Stop each answer after this many tokens.")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0, help="0 (the default) decodes greedily.")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(help="json suite: a JSON Schema file the answers should satisfy."),
    ] = None,
    graders: Annotated[
        list[str] | None,
        typer.Option(
            help='rewards suite: a grader as JSON, such as \'{"type": "numeric_match", '
            '"column": "answer"}\' (the same as a GRPO run\'s); repeat for more.'
        ),
    ] = None,
    length_normalized: Annotated[
        bool | None,
        typer.Option(
            help="preference suite: compare the mean log-probability per answer token (the "
            "default) or, with --no-length-normalized, the summed log-probabilities."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow it until it ends, or only start it.")] = True,
) -> None:
    """Evaluate a model, or two side by side, on samples of a processed dataset's split."""
    options = {
        "graders": _graders(graders),
        "length_normalized": length_normalized,
        "compare_with": compare_with,
        "split": split,
        "max_samples": max_samples,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "json_schema": _schema(schema),
    }
    spec = {"model": model, "dataset_id": dataset, "suite": suite} | {
        key: value for key, value in options.items() if value is not None
    }
    with api(ctx) as client:
        job = client.evaluate(spec)
        typer.echo(f"Evaluation {job.id} queued.")
        if wait:
            _follow(client, job.id)


@evals_app.command()
def show(ctx: typer.Context, eval_id: EvalId, as_json: JsonFlag = False) -> None:
    """A finished evaluation's metrics, per model and their difference (`--json`: with the
    details, such as the confusion matrix)."""
    with api(ctx) as client:
        found = client.evaluation(eval_id)
    if as_json:
        echo_json(found.model_dump(mode="json"))
        return
    _print_results(found)


def _value(value: bool | int | float | str) -> str:
    if isinstance(value, str):
        return repr(_shorten(value))
    return f"{value:.3g}" if isinstance(value, float) else str(value).lower()


def _print_sample(sample: SamplePublic) -> None:
    typer.echo(f"#{sample.index}  {_shorten(sample.prompt)}")
    if sample.reference is not None:
        typer.echo(f"    reference: {_shorten(sample.reference)}")
    for label in dict.fromkeys([*sample.answers, *sample.scores]):
        scores = sample.scores.get(label, {})
        shown = ", ".join(f"{k} {_value(v)}" for k, v in scores.items())
        answer = ""
        if label in sample.answers:
            answer = f"{_shorten(sample.answers[label]) or '(an empty answer)'}  "
        typer.echo(f"    {label}: {answer}" + (f"({shown})" if shown else ""))


@evals_app.command()
def samples(
    ctx: typer.Context,
    eval_id: EvalId,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many samples.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Show at most this many.")] = 20,
    which: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="Only a_right_b_wrong, a_wrong_b_right, both_right, both_wrong, a_right or "
            "a_wrong samples (right: `correct`, else a score of at least 0.5).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Browse an evaluation's samples: prompt, reference, each model's answer and scores."""
    with api(ctx) as client:
        page = client.evaluation_samples(eval_id, offset, limit, which)
    if as_json:
        echo_json(page.model_dump(mode="json"))
        return
    for sample in page.items:
        _print_sample(sample)
    typer.echo(f"{len(page.items)} of {page.total} samples")


@evals_app.command()
def download(
    ctx: typer.Context,
    eval_id: EvalId,
    fmt: Annotated[Format, typer.Option("--format", help="The file's format.")] = Format.csv,
    output: Annotated[
        Path | None, typer.Option(help="Where to save it [default: evaluation-ID.FORMAT].")
    ] = None,
) -> None:
    """Save every sample of an evaluation as CSV or JSON Lines."""
    path = output or Path(f"evaluation-{eval_id}.{fmt.value}")
    with api(ctx) as client:
        client.download_evaluation(eval_id, "jsonl" if fmt is Format.jsonl else "csv", path)
    typer.echo(f"Saved {path}")
