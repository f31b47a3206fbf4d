"""The tiny encoder-free ("unified") Gemma 4, for the tests of images through the 12B's path."""

from __future__ import annotations

from pathlib import Path

from tuneforge.models.catalog import catalog

TINY_UNIFIED_ID = "tiny-random-gemma4-unified"


def tiny_unified_dir(models_dir: Path) -> Path:
    """`tiny-random-gemma4-unified`'s directory (built once per cache)."""
    from tuneforge.models.loading import model_dir

    entry = catalog().get(TINY_UNIFIED_ID)
    assert entry is not None
    return model_dir(entry, models_dir)
