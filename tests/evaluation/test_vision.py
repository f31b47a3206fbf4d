"""Evaluation with images, in the worker's code path, on tiny-random-gemma3-vision: a sample
carries its row's images to the model's vision path (the same question about different images
gets different greedy answers, the same image the same answer, and without the images every
answer is the same), every row keeps a thumbnail of its images, a text-only model is refused by
name, the text-only suites leave image rows out, and the fitting suite counts image rows."""

from __future__ import annotations

import base64
import io
import threading

import pytest
from PIL import Image

from tests.images import png
from tuneforge.errors import InvalidInput
from tuneforge.evaluation.fitting import fitting_suite
from tuneforge.evaluation.run import Outcome, run_evaluation
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.inference.params import ModelRef
from tuneforge.settings import Settings

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


IMAGES = [
    (png("red", seed=1), "red"),
    (png("blue", seed=2), "blue"),
    (png("red", seed=1), "red"),  # the first image again, byte for byte
    (png("green", seed=3), "green"),
    (png("yellow", seed=4), "yellow"),
    (png("blue", seed=5), "blue"),
]


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
    seen: Outcome = evaluate(settings, [pictured(image, label) for image, label in IMAGES])
    answers = [row["answers"]["A"] for row in seen.rows]
    assert len(answers) == len(IMAGES) and seen.skipped == 0
    # Greedy decoding: the same image gives the same answer, other images other answers.
    assert answers[0] == answers[2]
    assert len(set(answers)) >= 3, answers
    # The same rows without their images: the prompts are identical, and so are the answers.
    blind = evaluate(settings, [pictured(None, label) for _, label in IMAGES])
    assert len({row["answers"]["A"] for row in blind.rows}) == 1
    # Every row shows its image as a small JPEG; the scores are the suite's.
    for row, (_, label) in zip(seen.rows, IMAGES, strict=True):
        assert len(row["images"]) == 1 and max(thumbnail_size(row["images"][0])) <= 160
        assert row["reference"] == label and row["prompt"] == QUESTION
        assert row["scores"]["A"]["correct"] == (row["answers"]["A"].lower() == label)
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
