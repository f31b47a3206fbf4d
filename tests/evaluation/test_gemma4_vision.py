"""Evaluation with images on the tiny Gemma 4, in the worker's code path: each sample carries its
row's image through Gemma 4's image path (rendered in Gemma 4's format, the image's own soft
tokens): with the same seed and the same tokens, other pixels give other sampled answers, the
same pixels the same ones; every row keeps its thumbnail."""

from __future__ import annotations

import pytest

from tests.evaluation.test_vision import IMAGES, OTHERS, evaluate, pictured, thumbnail_size
from tuneforge.settings import Settings

GEMMA4 = "tiny-random-gemma4"


@pytest.mark.timeout(240)
def test_gemma_4_evaluates_rows_with_images(settings: Settings) -> None:
    sampled = {"suite": "vibe", "temperature": 1.0, "seed": 3, "max_new_tokens": 4}
    rows = [pictured(image, label) for image, label in IMAGES]
    seen = evaluate(settings, rows, model=GEMMA4, **sampled)
    again = evaluate(settings, rows, model=GEMMA4, **sampled)
    other = evaluate(
        settings, [pictured(image, label) for image, label in OTHERS], model=GEMMA4, **sampled
    )
    answers = [row["answers"]["A"] for row in seen.rows]
    assert [row["answers"]["A"] for row in again.rows] == answers
    changed = [a != row["answers"]["A"] for a, row in zip(answers, other.rows, strict=True)]
    assert sum(changed) >= len(IMAGES) // 2, (answers, [r["answers"]["A"] for r in other.rows])
    for row in seen.rows:
        assert len(row["images"]) == 1 and max(thumbnail_size(row["images"][0])) <= 160
