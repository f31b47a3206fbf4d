"""Which models can answer samples that show images: vision models only. Light (no torch): the
launch check refuses a text-only model on a dataset with images before anything is queued, and
the worker refuses it again on the rows it actually draws."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneforge.errors import InvalidInput
from tuneforge.models.catalog import CatalogEntry


def image_count(stats: Mapping[str, Any] | None) -> int:
    """How many images a processed dataset holds, from its statistics (0: text only)."""
    images = (stats or {}).get("images") or {}
    return int(images.get("total") or 0)


def refuse_text_only(names: Sequence[str], entries: Sequence[CatalogEntry | None]) -> None:
    """Raise `InvalidInput` naming the first model that cannot see images (`entries`: each
    model's catalog base, None when unknown), for samples that show some."""
    for name, entry in zip(names, entries, strict=True):
        if entry is None or entry.modality != "vision":
            raise InvalidInput(
                f"{name} is a text-only model and this dataset's samples show images: evaluate "
                "a vision model (such as Gemma 3 4B, or a fine-tune of one) on it, or this "
                "model on a dataset without images.",
                {"fields": ["model", "compare_with", "dataset_id"]},
            )
