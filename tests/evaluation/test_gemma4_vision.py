"""Evaluation with images on the tiny Gemma 4s (with an image encoder, and the encoder-free
layout of the 12B), in the worker's code path: each sample carries its row's image through
Gemma 4's image path (rendered in Gemma 4's format, the image's own soft
tokens): with the same seed and the same tokens, other pixels give other sampled answers, the
same pixels the same ones; every row keeps its thumbnail."""

from __future__ import annotations

import pytest

from tests.evaluation.test_vision import IMAGES, OTHERS, evaluate, pictured, thumbnail_size
from tuneforge.settings import Settings


@pytest.fixture
def settings(library_settings: Settings) -> Settings:
    """The evaluation runs here as in its worker, which opens no database."""
    return library_settings


@pytest.mark.timeout(240)
@pytest.mark.parametrize("model", ["tiny-random-gemma4", "tiny-random-gemma4-unified"])
def test_gemma_4_evaluates_rows_with_images(settings: Settings, model: str) -> None:
    sampled = {"suite": "vibe", "temperature": 1.0, "seed": 3, "max_new_tokens": 4}
    rows = [pictured(image, label) for image, label in IMAGES]
    seen = evaluate(settings, rows, model=model, **sampled)
    again = evaluate(settings, rows, model=model, **sampled)
    other = evaluate(
        settings, [pictured(image, label) for image, label in OTHERS], model=model, **sampled
    )
    answers = [row["answers"]["A"] for row in seen.rows]
    assert [row["answers"]["A"] for row in again.rows] == answers
    changed = [a != row["answers"]["A"] for a, row in zip(answers, other.rows, strict=True)]
    assert sum(changed) >= len(IMAGES) // 2, (answers, [r["answers"]["A"] for r in other.rows])
    for row in seen.rows:
        assert len(row["images"]) == 1 and max(thumbnail_size(row["images"][0])) <= 160
