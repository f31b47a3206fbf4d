"""The files a training starts from, on the node that trains: the catalog model (resolved into
the node's model cache), or the fine-tune the run continues (`start_from`), fetched from the
artifact store. The `train` worker uses it, and so does each rank of a run whose ranks run on
other Ray nodes (`NodeModel`, which crosses to them)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.models.loading import resolve
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore


@dataclass(frozen=True)
class Continued:
    """The stored fine-tune a run continues."""

    artifact_key: str
    kind: str  # "adapter" or a full model's kind
    name: str


def fetch_continued(store: ArtifactStore, model: Continued, base: Path, local: Path) -> Path:
    """`model`'s files fetched into `local` (replacing what was there); an adapter's config
    then names `base`, the local base model."""
    from tuneforge.training.runtime import name_base

    shutil.rmtree(local, ignore_errors=True)
    store.get_dir(model.artifact_key, local)
    if model.kind == "adapter":
        name_base(local, base)
    return local


@dataclass(frozen=True)
class NodeModel:
    """A run's starting model as any node gets its files (called with a folder for them)."""

    base_model: str
    continued: Continued | None
    settings: Any  # a Ray object ref of the settings as JSON: they carry the store's keys

    def __call__(self, local: Path) -> Path:
        import ray

        settings = Settings.model_validate_json(ray.get(self.settings))
        _, base = resolve(self.base_model, settings)
        if self.continued is None:
            return base
        store = ArtifactStore(settings.resolved_storage_url, settings.storage_options)
        return fetch_continued(store, self.continued, base, local)
