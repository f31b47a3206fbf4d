"""`/evaluations/{id}`: one evaluation: live progress while it runs, then the metric table (with
"fine-tune vs base" when two models answered), a chart comparing them (for the rewards suite,
each grader's mean reward for A and B side by side; for the preference suite, how often each
prefers the chosen answer), the confusion matrix for classification, and every sample with its
images (thumbnails), reference and answers (with each grader's grade and why; for tool calls,
the calls read from each answer and the checks they failed), filterable and downloadable."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from tuneforge.db.tables import User
from tuneforge.errors import NotFound
from tuneforge.evaluation.comparison import (
    LOWER_IS_BETTER,
    NOT_FRACTIONS,
    delta_text,
    metric_label,
    value_text,
)
from tuneforge.evaluation.report import SampleFilter
from tuneforge.services import chat as chat_service
from tuneforge.services import evaluations as service
from tuneforge.services import jobs as job_service
from tuneforge.ui.backend import read, state
from tuneforge.ui.formatting import status_color
from tuneforge.ui.layout import EmptyState, heading, page

REFRESH_SECONDS = 1.0
PAGE_SIZE = 20
CARD = "w-full q-pa-lg gap-3"
TITLE = "text-subtitle1 text-weight-medium"
#: What the chart of a suite's results shows, when it needs saying.
CHART_TITLES = {
    "rewards": "Mean reward per grader (0 to 1)",
    "preference": "How often the chosen answer is the likelier one",
}
FILTERS: dict[str, str] = {
    "": "All samples",
    "a_right_b_wrong": "A right, B wrong",
    "a_wrong_b_right": "A wrong, B right",
    "both_right": "Both right",
    "both_wrong": "Both wrong",
}


@page("/evaluations/{job_id}", "Evaluation")
async def evaluation_page(user: User, job_id: str) -> None:
    try:
        job = await read(job_service.get_job, user, job_id)
        if job.kind != "evaluate":
            raise NotFound("not an evaluation")
    except NotFound:
        ui.status_code(404)
        EmptyState("search_off", "Evaluation not found", "There is no evaluation with this id.")
        return
    spec = job.spec
    names = {m.id: m.name for m in await read(chat_service.chat_models, user, state().settings)}
    models = " vs ".join(
        names.get(model_id, model_id)
        for model_id in (spec["model"], spec.get("compare_with"))
        if model_id
    )
    with ui.link(target="/evaluations").classes("row items-center gap-1 text-grey-7 no-underline"):
        ui.icon("arrow_back", size="xs")
        ui.label("All evaluations").classes("text-body2")
    origin = "Automatic before/after check of a training run · " if spec.get("automatic") else ""
    heading(
        f"{spec['suite'].replace('_', ' ').capitalize()} · {models}",
        f"{origin}{spec['split']} split of the dataset",
    )
    progress_card = ui.card().classes(CARD + " evaluation-progress")
    with progress_card:
        status = ui.badge()
        bar = ui.linear_progress(value=0, show_value=False)
        message = ui.label().classes("text-body2 text-grey-7")
    results = ui.column().classes("w-full gap-6")

    async def watch() -> None:
        current = await read(job_service.get_job, user, job_id)
        status.set_text(current.status)
        status.props(f"color={status_color(current.status)}")
        bar.set_value(current.progress)
        message.set_text(current.error or current.message or "")
        if current.status in ("queued", "running", "cancelling"):
            return
        timer.deactivate()
        if current.status == "succeeded":
            progress_card.set_visibility(False)
            with results:
                await _results(user, job_id)

    timer = ui.timer(REFRESH_SECONDS, watch)
    await watch()


async def _results(user: User, job_id: str) -> None:
    result = await read(service.evaluation, user, job_id)
    labels = [m["name"] for m in result["models"]]
    metrics: list[dict[str, float]] = result["metrics"]
    with ui.card().classes(CARD):
        ui.label(f"Results on {result['count']} samples").classes(TITLE)
        if result.get("judge_error"):
            ui.label(
                f"The judge could not grade the answers: {result['judge_error']} The metrics "
                "and samples below are without its grades."
            ).classes("text-body2 text-negative evaluation-judge-error")
        if result.get("engine"):
            note = result.get("engine_note")
            ui.label(f"Answers made by {result['engine']}." + (f" {note}" if note else "")).classes(
                "text-caption text-grey-7 evaluation-engine"
            )
        if result["skipped"]:
            ui.label(
                f"{result['skipped']} rows of the split could not be used by this suite."
            ).classes("text-caption text-grey-7")
        if metrics and metrics[0]:
            _metric_table(labels, metrics, result.get("comparison"))
            if len(metrics) == 2 or result["suite"] == "rewards":
                _chart(labels, metrics, CHART_TITLES.get(result["suite"]))
            if embedder := (result["details"] or [{}])[0].get("embedding_model"):
                ui.label(f"Embedding similarity by {embedder}.").classes("text-caption text-grey-7")
        else:
            ui.label("This suite shows answers side by side, without metrics.").classes(
                "text-body2 text-grey-7"
            )
        with ui.row().classes("gap-2"):
            for fmt in ("csv", "jsonl"):
                ui.button(
                    f"Download {fmt.upper()}",
                    icon="download",
                    on_click=lambda f=fmt: ui.download(f"/api/v1/evaluations/{job_id}/samples.{f}"),
                ).props("outline").classes(f"evaluation-download-{fmt}")
    for label, details in zip(labels, result["details"], strict=False):
        if details.get("confusion_matrix"):
            _confusion(label, details)
    await _samples(user, job_id, labels, result["suite"])


def _metric_table(
    labels: list[str], metrics: list[dict[str, float]], compared: dict[str, Any] | None
) -> None:
    """Each metric of A (and B), and with two models their difference as people read it:
    "fine-tune vs base: +33.3 pts", positive when the fine-tune does better."""
    columns = [{"name": "metric", "label": "Metric", "field": "metric", "align": "left"}]
    columns += [
        {"name": f"m{i}", "label": f"{'AB'[i]}: {n}", "field": f"m{i}"}
        for i, n in enumerate(labels)
    ]
    if compared:
        columns.append({"name": "diff", "label": compared["label"], "field": "diff"})
    rows = []
    for name in metrics[0]:
        row: dict[str, Any] = {"metric": metric_label(name)}
        for i, values in enumerate(metrics):
            row[f"m{i}"] = value_text(name, values[name])
        if compared and name in compared["values"]:
            better = " (lower is better)" if name in LOWER_IS_BETTER else ""
            row["diff"] = delta_text(name, compared["values"][name]) + better
        rows.append(row)
    ui.table(columns=columns, rows=rows, row_key="metric").props("flat dense wrap-cells").classes(
        "w-full evaluation-metrics"
    )
    if compared:
        ui.label(
            f"{compared['label']}: {labels[compared['first']]} minus "
            f"{labels[1 - compared['first']]}."
        ).classes("text-caption text-grey-7 evaluation-difference-note")


def _chart(labels: list[str], metrics: list[dict[str, float]], title: str | None) -> None:
    """The metrics that are fractions (0..1), a bar per model."""
    names = [n for n in metrics[0] if n not in NOT_FRACTIONS]
    if not names:
        return
    if title:
        ui.label(title).classes("text-body2 text-weight-medium q-mt-sm")
    ui.echart(
        {
            "tooltip": {"trigger": "axis"},
            "legend": {"data": labels},
            "xAxis": {"type": "category", "data": [metric_label(n) for n in names]},
            "yAxis": {"type": "value", "min": 0, "max": 1},
            "series": [
                {"name": label, "type": "bar", "data": [round(m[n], 4) for n in names]}
                for label, m in zip(labels, metrics, strict=True)
            ],
        }
    ).classes("w-full h-64 evaluation-chart")


def _confusion(label: str, details: dict[str, Any]) -> None:
    with ui.card().classes(CARD):
        ui.label(f"Confusion matrix: {label}").classes(TITLE)
        ui.label("Rows: the reference label; columns: the answer.").classes(
            "text-caption text-grey-7"
        )
        predicted = details.get("predicted_labels", details["labels"])
        columns = [{"name": "ref", "label": "", "field": "ref", "align": "left"}]
        columns += [
            {"name": f"p{i}", "label": p, "field": f"p{i}"} for i, p in enumerate(predicted)
        ]
        rows = [
            {"ref": ref, **{f"p{i}": n for i, n in enumerate(counts)}}
            for ref, counts in zip(details["labels"], details["confusion_matrix"], strict=False)
        ]
        ui.table(columns=columns, rows=rows, row_key="ref").props("flat dense").classes(
            "evaluation-confusion"
        )


async def _samples(user: User, job_id: str, labels: list[str], suite: str) -> None:
    store = state().store
    view: dict[str, Any] = {"filter": "", "page": 1}
    with ui.card().classes(CARD):
        with ui.row().classes("w-full items-center"):
            ui.label("Samples").classes(TITLE + " col-grow")
            if len(labels) == 2 and suite not in ("vibe", "perplexity"):
                ui.select(FILTERS, value="", on_change=lambda: shown.refresh()).bind_value(
                    view, "filter"
                ).props("dense outlined").classes("w-52 evaluation-filter")

        @ui.refreshable
        async def shown() -> None:
            which: SampleFilter | None = view["filter"] or None  # type: ignore[assignment]
            rows, total = await read(
                service.samples,
                store,
                user,
                job_id,
                offset=(view["page"] - 1) * PAGE_SIZE,
                limit=PAGE_SIZE,
                which=which,
            )
            ui.label(f"{total} samples").classes("text-caption text-grey-7 evaluation-count")
            for row in rows:
                _sample(row, labels)
            pages = max(1, -(-total // PAGE_SIZE))
            if pages > 1:
                ui.pagination(
                    1, pages, direction_links=True, on_change=lambda: shown.refresh()
                ).bind_value(view, "page")

        await shown()


def _sample(row: dict[str, Any], labels: list[str]) -> None:
    with (
        ui.column()
        .classes("w-full gap-1 q-py-sm evaluation-sample")
        .style("border-top: 1px solid #eee")
    ):
        if row.get("images"):
            _thumbnails(row["images"])
        ui.label(row["prompt"]).classes("text-body2 text-weight-medium")
        if row.get("reference") is not None:
            ui.label(f"Reference: {row['reference']}").classes("text-body2 text-grey-8")
        with ui.row().classes("w-full gap-4 no-wrap"):
            for letter, label in zip("AB", labels, strict=False):
                scores = row["scores"].get(letter, {})
                right = scores.get("correct")
                with ui.column().classes("col gap-0 min-w-0"):
                    mark = "" if right is None else (" ✓" if right else " ✗")
                    score = f" · score {scores['score']:.2f}" if "score" in scores else ""
                    if "margin" in scores:  # a preference pair: by how much it prefers chosen
                        score += f" · margin {scores['margin']:+.3f}"
                    ui.label(f"{letter}: {label}{mark}{score}").classes("text-caption text-grey-7")
                    ui.label(row["answers"].get(letter, "")).classes(
                        f"text-body2 evaluation-answer-{letter.lower()}"
                    )
                    _grades(scores)
                    _tool_checks(scores)


#: How a sample's tool-call checks read when they fail.
TOOL_CHECKS = {
    "tool_name": "wrong tools",
    "arguments": "wrong arguments",
    "schema_valid": "breaks the schema",
    "no_call": "called a tool",
}


def _tool_checks(scores: dict[str, Any]) -> None:
    """A tool_calls sample: the calls read from the answer and each check it failed, or that it
    did not call where a call was due (why the calls are malformed or break a schema on
    hover)."""
    if "expects_call" not in scores:
        return
    calls = str(scores.get("calls") or "") or "(no call)"
    ui.label(f"Calls: {calls}").classes("text-caption text-grey-8 evaluation-calls")
    failed = [TOOL_CHECKS.get(n, n) for n in str(scores.get("failed") or "").split(", ") if n]
    if scores["expects_call"] and not scores.get("called"):
        failed = ["did not call"]  # every check fails: saying so once is clearer
    if not failed:
        return
    with ui.row().classes("gap-1 evaluation-tool-checks"):
        for name in failed:
            with ui.badge(name, color="negative").props("outline"):
                if scores.get("problem"):
                    ui.tooltip(str(scores["problem"]))


def _thumbnails(images: list[str]) -> None:
    """The images the models were shown with the prompt, small (JPEG `data:` URLs)."""
    with ui.row().classes("gap-2 evaluation-images"):
        for number, url in enumerate(images, 1):
            ui.element("img").props(f'src="{url}" alt="image {number} of the prompt"').classes(
                "rounded-borders evaluation-image"
            ).style("max-width: 120px; max-height: 120px; object-fit: contain")


def _grades(scores: dict[str, Any]) -> None:
    """A rewards sample's grade by each grader, with why on hover."""
    graders = [k.removeprefix("reward/") for k in scores if k.startswith("reward/")]
    if not graders:
        return
    with ui.row().classes("gap-1 q-mt-xs evaluation-grades"):
        for name in graders:
            grade = float(scores[f"reward/{name}"])
            colour = "positive" if grade >= 1 else "negative" if grade <= 0 else "warning"
            with ui.badge(f"{name} {grade:.2f}", color=colour).props("outline"):
                ui.tooltip(str(scores.get(f"reason/{name}", "")))
