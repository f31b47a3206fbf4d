"""What the learning tests share: Gemma 3 270M made ready before their clocks start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.settings import Settings


@pytest.fixture
def gemma_270m(settings: Settings) -> Path:
    """Gemma 3 270M's folder in the tests' model cache, with the safetensors that training loads
    and the GGUF that evaluations answer with made first: the studio makes them once per machine
    (about a minute and a half on two busy cores), so a learning test's time budget leaves them
    out."""
    from tuneforge.inference.fast_path import base_gguf
    from tuneforge.models.catalog import catalog
    from tuneforge.models.loading import model_dir

    entry = catalog().get("gemma-3-270m")
    assert entry is not None
    path = model_dir(entry, settings.models_dir)
    base_gguf(entry, settings.models_dir, batch=True)
    return path
