"""Evaluation with images, in the worker's code path, on tiny-random-gemma3-vision: a sample
carries its row's images to the model's vision path (with the same tokens and the same seed,
other pixels give other sampled answers, the same pixels the same ones), every row keeps a
thumbnail of its images, a text-only model is refused by name, the text-only suites leave image
rows out, and the fitting suite counts image rows."""

from __future__ import annotations

import base64
import io
import threading

import pytest
from PIL import Image

from tests.images import png
from tuneforge.errors import InvalidInput
from tuneforge.evaluation.fitting import fitting_suite
from tuneforge.evaluation.metrics.classification import normalize_label
from tuneforge.evaluation.run import run_evaluation
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.inference.params import ModelRef
from tuneforge.settings import Settings


@pytest.fixture
def settings(library_settings: Settings) -> Settings:
    """The evaluation runs here as in its worker, which opens no database."""
    return library_settings


VISION = "tiny-random-gemma3-vision"
QUESTION = "What colour is the square?"


def pictured(image: bytes | None, answer: str) -> dict:
    """A conversation row asking `QUESTION` about `image` (None: the same row without it)."""
    parts: list[dict] = [{"type": "text", "text": QUESTION}]
    if image is not None:
        parts.insert(0, {"type": "image"})
    return {
        "messages": [
            {"role": "user", "content": parts},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "images": [] if image is None else [image],
    }


COLOURS = ["red", "blue", "green", "yellow", "red", "blue"]
IMAGES = [(png(colour, seed=i), colour) for i, colour in enumerate(COLOURS)]
OTHERS = [(png(COLOURS[i - 1], seed=100 + i), colour) for i, colour in enumerate(COLOURS)]
"""Other images at the same places (the rows' texts, and so their references, unchanged)."""


def evaluate(settings: Settings, records: list[dict], model: str = VISION, **spec: object):
    values = {"model": model, "dataset_id": "d", "suite": "classification", "max_new_tokens": 6}
    return run_evaluation(
        EvaluationSpec.model_validate(values | spec),
        [ModelRef(base=model)],
        records,
        settings,
        lambda *_: None,
        threading.Event(),
        names=[f"The model {model}"],
    )


def thumbnail_size(url: str) -> tuple[int, int]:
    head, data = url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        assert image.format == "JPEG"
        return image.size


@pytest.mark.timeout(180)
def test_the_images_reach_the_model(settings: Settings) -> None:
    """Sampled answers (temperature 1): each sample draws with the same seed whichever image it
    shows, and its prompt has the same tokens, so only the pixels can change its answer."""
    sampled = {"suite": "vibe", "temperature": 1.0, "seed": 3, "max_new_tokens": 4}
    seen = evaluate(settings, [pictured(image, label) for image, label in IMAGES], **sampled)
    again = evaluate(settings, [pictured(image, label) for image, label in IMAGES], **sampled)
    other = evaluate(settings, [pictured(image, label) for image, label in OTHERS], **sampled)
    answers = [row["answers"]["A"] for row in seen.rows]
    assert [row["answers"]["A"] for row in again.rows] == answers
    changed = [a != row["answers"]["A"] for a, row in zip(answers, other.rows, strict=True)]
    assert sum(changed) >= len(IMAGES) // 2, (answers, [r["answers"]["A"] for r in other.rows])


def test_rows_keep_thumbnails_and_scores(settings: Settings) -> None:
    outcome = evaluate(settings, [pictured(image, label) for image, label in IMAGES[:4]])
    assert len(outcome.rows) == 4 and outcome.skipped == 0
    for row, (_, label) in zip(outcome.rows, IMAGES[:4], strict=True):
        assert len(row["images"]) == 1 and max(thumbnail_size(row["images"][0])) <= 160
        assert row["reference"] == label and row["prompt"] == QUESTION
        right = normalize_label(row["answers"]["A"]) == label
        assert row["scores"]["A"]["correct"] == right
    blind = evaluate(settings, [pictured(None, label) for _, label in IMAGES[:2]])
    assert all(row["images"] == [] for row in blind.rows)


def test_a_text_only_model_is_refused_by_name(settings: Settings) -> None:
    records = [pictured(image, label) for image, label in IMAGES[:2]]
    with pytest.raises(
        InvalidInput, match="The model tiny-random-gemma3 is a text-only model and this dataset"
    ):
        evaluate(settings, records, model="tiny-random-gemma3")


def test_text_only_suites_leave_image_rows_out(settings: Settings) -> None:
    records = [pictured(image, label) for image, label in IMAGES[:2]]
    with pytest.raises(InvalidInput, match=r"rows with images are left out"):
        evaluate(settings, records, suite="perplexity")


def test_the_fitting_suite_counts_rows_with_images() -> None:
    rows = [pictured(image, label) for image, label in IMAGES * 2]
    assert fitting_suite(rows) == "classification"
    captions = [
        pictured(image, f"A {label} square on grey noise, off centre.") for image, label in IMAGES
    ]
    assert fitting_suite(captions) == "conversation"
