"""Charts of a processed dataset's statistics: token lengths, turns, labels, duplicates; for
preference pairs each side's length and the margin, for feedback its labels, for prompts the
reference columns kept."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from tuneforge.data.limits import size_text
from tuneforge.data.stats import (
    DatasetStats,
    ImageStats,
    LengthStats,
    MarginStats,
    PairStats,
    SizeSummary,
)
from tuneforge.ui import BRAND_COLOR
from tuneforge.ui.dataset_fields import description, label

LENGTHS = {"total_tokens": "Total", "prompt_tokens": "Prompt", "answer_tokens": "Answer"}
FIGURES = ("min", "mean", "p50", "p90", "p95", "p99", "max")
SUMMARY_COLUMNS = [
    {"name": "part", "label": "", "field": "part", "align": "left"},
    *({"name": f, "label": label(f), "field": f, "align": "right"} for f in FIGURES),
]
SIDES = {"prompt_tokens": "Prompt", "chosen_tokens": "Chosen", "rejected_tokens": "Rejected"}
MARGIN_FIGURES = ("mean", "min", "p10", "p50", "p90", "max", "chosen_longer", "rejected_longer")
MARGIN_COLUMNS = [
    {"name": f, "label": label(f), "field": f, "align": "right"} for f in MARGIN_FIGURES
]
IMAGE_FIGURES = ("min", "p50", "p90", "max")
IMAGE_COLUMNS = [
    {"name": "size", "label": "", "field": "size", "align": "left"},
    *({"name": f, "label": label(f), "field": f, "align": "right"} for f in IMAGE_FIGURES),
]
LABEL_BAR_PX = 22
SUBTITLE = "text-subtitle2 text-grey-9"


def _bars(
    categories: list[str], counts: list[int], axis: str, *, horizontal: bool = False
) -> dict[str, Any]:
    """ECharts options for a bar chart of `counts` rows per category."""
    category_axis: dict[str, Any] = {
        "type": "category",
        "data": categories,
        "name": axis,
        "nameLocation": "middle",
        "nameGap": 32,
        "axisLabel": {"hideOverlap": True},
    }
    value_axis: dict[str, Any] = {"type": "value", "name": "rows", "minInterval": 1}
    if horizontal:
        category_axis |= {"inverse": True, "name": ""}
        value_axis |= {"nameLocation": "middle", "nameGap": 28}
    return {
        "grid": {"left": 12, "right": 24, "top": 32, "bottom": 40, "containLabel": True},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "xAxis": value_axis if horizontal else category_axis,
        "yAxis": category_axis if horizontal else value_axis,
        "series": [
            {
                "type": "bar",
                "name": "rows",
                "data": counts,
                "barCategoryGap": "20%" if horizontal else "4%",
                "barMaxWidth": 64,
                "itemStyle": {"color": BRAND_COLOR},
            }
        ],
    }


def _histogram(lengths: LengthStats | MarginStats) -> dict[str, Any]:
    categories = [
        f"{b.start:,}" if b.end - b.start == 1 else f"{b.start:,}-{b.end - 1:,}"
        for b in lengths.histogram
    ]
    return _bars(categories, [b.count for b in lengths.histogram], "Gemma tokens")


def stats_view(data: dict[str, Any]) -> None:
    """The statistics as stored on the dataset."""
    stats = DatasetStats.model_validate(data)
    with ui.column().classes("w-full gap-6 dataset-stats"):
        _lengths(stats)
        if stats.images is not None:
            _images(stats.images)
        if stats.pairs:
            _pairs(stats.pairs)
        if stats.feedback:
            ui.label("Feedback labels").classes(SUBTITLE)
            for split, counts in stats.feedback.items():
                ui.label(
                    f"{split}: {counts.desirable:,} desirable, {counts.undesirable:,} undesirable"
                ).classes("text-body2 text-grey-8 feedback-counts")
        if stats.reference_columns is not None:
            kept = ", ".join(stats.reference_columns) or "none"
            ui.label(f"Reference columns kept for graders: {kept}").classes(
                "text-body2 text-grey-8 reference-columns"
            )
        with ui.row().classes("w-full gap-6 items-start"):
            with ui.column().classes("col-12 col-md gap-1"):
                ui.label("Turns per example").classes(SUBTITLE)
                ui.markdown(description(DatasetStats, "turns")).classes("field-help text-grey-7")
                ui.echart(
                    _bars([str(t) for t in stats.turns], list(stats.turns.values()), "turns")
                ).classes("w-full h-56 turns-chart")
            if stats.labels is not None:
                _labels(stats)
        duplicates = stats.duplicates
        ui.label(
            f"Duplicates: {duplicates.exact:,} exact, {duplicates.normalized:,} once case "
            "and spaces are ignored."
        ).classes("text-body2 text-grey-8")


def _lengths(stats: DatasetStats) -> None:
    with ui.row().classes("w-full items-center justify-between"):
        ui.label("Example lengths in Gemma tokens").classes(SUBTITLE)
        part = ui.toggle(LENGTHS, value="total_tokens").props(
            "dense no-caps unelevated toggle-color=primary"
        )
    chart = ui.echart(_histogram(stats.total_tokens)).classes("w-full h-64 token-histogram")
    explanation = ui.markdown(description(DatasetStats, "total_tokens")).classes(
        "field-help text-grey-7"
    )

    def show(name: str) -> None:
        chart.options.clear()
        chart.options.update(_histogram(getattr(stats, name)))
        chart.update()
        explanation.set_content(description(DatasetStats, name))

    part.on_value_change(lambda event: show(event.value))
    ui.table(
        columns=SUMMARY_COLUMNS,
        rows=[{"part": title, **_figures(getattr(stats, name))} for name, title in LENGTHS.items()],
        row_key="part",
    ).props("flat dense bordered").classes("w-full length-summary")


def _figures(lengths: LengthStats) -> dict[str, str]:
    return {name: f"{getattr(lengths, name):,.0f}" for name in FIGURES}


def _pairs(pairs: dict[str, PairStats]) -> None:
    """Each side's lengths and the margin (chosen minus rejected) of the split chosen."""
    splits = list(pairs)
    with ui.row().classes("w-full items-center justify-between"):
        ui.label("Preference pairs: each side in Gemma tokens").classes(SUBTITLE)
        split = ui.toggle(splits, value=splits[0]).props(
            "dense no-caps unelevated toggle-color=primary"
        )
        split.set_visibility(len(splits) > 1)
    ui.markdown(description(PairStats, "margin_tokens")).classes("field-help text-grey-7")
    view = ui.column().classes("w-full gap-2 pair-stats")

    def show(name: str) -> None:
        view.clear()
        stats = pairs[name]
        with view:
            ui.table(
                columns=SUMMARY_COLUMNS,
                rows=[{"part": title, **_figures(getattr(stats, n))} for n, title in SIDES.items()],
                row_key="part",
            ).props("flat dense bordered").classes("w-full side-summary")
            margin = stats.margin_tokens
            ui.label(f"Margin: chosen minus rejected, mean {margin.mean:+,.1f} tokens").classes(
                "text-body2 text-grey-8 margin-mean"
            )
            ui.table(
                columns=MARGIN_COLUMNS,
                rows=[
                    {
                        f: f"{getattr(margin, f):,.1f}"
                        if f == "mean"
                        else f"{getattr(margin, f):,}"
                        for f in MARGIN_FIGURES
                    }
                ],
                row_key="mean",
            ).props("flat dense bordered").classes("w-full margin-summary")
            ui.echart(_histogram(margin)).classes("w-full h-56 margin-histogram")

    split.on_value_change(lambda event: show(event.value))
    show(splits[0])


def _labels(stats: DatasetStats) -> None:
    labels = stats.labels
    assert labels is not None
    names = [entry.label for entry in labels.top]
    counts = [entry.count for entry in labels.top]
    if labels.other:
        names.append(f"({labels.distinct - len(labels.top):,} others)")
        counts.append(labels.other)
    with ui.column().classes("col-12 col-md gap-1"):
        ui.label(f"Labels in {labels.column!r}").classes(SUBTITLE)
        ui.label(f"{labels.distinct:,} distinct values").classes("text-body2 text-grey-7")
        ui.echart(_bars(names, counts, "", horizontal=True)).classes("w-full label-chart").style(
            f"height: {max(160, 48 + LABEL_BAR_PX * len(names))}px"
        )


def _images(images: ImageStats) -> None:
    """How many images, how large, and what they cost in tokens."""
    formats = ", ".join(f"{count:,} {name}" for name, count in images.formats.items())
    with ui.row().classes("w-full gap-6 items-start image-stats"):
        with ui.column().classes("col-12 col-md gap-1"):
            ui.label("Images per example").classes(SUBTITLE)
            ui.label(
                f"{images.total:,} images in {images.rows_with_images:,} examples ({formats}). "
                f"Each counts {images.tokens_per_image:,} tokens in the lengths above: Gemma 3 "
                "reads every image as 256 image tokens plus 4 around them, whatever its size."
            ).classes("text-body2 text-grey-8 image-summary")
            counts = images.per_row
            ui.echart(_bars([str(n) for n in counts], list(counts.values()), "images")).classes(
                "w-full h-48 images-chart"
            )
        with ui.column().classes("col-12 col-md gap-1"):
            ui.label("Image sizes").classes(SUBTITLE)
            ui.table(
                columns=IMAGE_COLUMNS,
                rows=[
                    {"size": "Width (px)", **_sized(images.width, str)},
                    {"size": "Height (px)", **_sized(images.height, str)},
                    {"size": "Pixels (width x height)", **_sized(images.pixels, _pixels)},
                    {"size": "File", **_sized(images.bytes, size_text)},
                ],
                row_key="size",
            ).props("flat dense bordered").classes("w-full image-sizes")


def _sized(summary: SizeSummary, shown: Any) -> dict[str, str]:
    return {name: shown(getattr(summary, name)) for name in IMAGE_FIGURES}


def _pixels(pixels: int) -> str:
    return f"{pixels / 1e6:,.1f} MP" if pixels >= 1_000_000 else f"{pixels:,}"
