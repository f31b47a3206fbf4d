"""What jobs take in, checked as their owner: the processed datasets they read and the models
they name. The kinds check these before a job is queued, the workers again before they use
them (either may have gone meanwhile), and the chat service resolves models the same way.
A run that continues an earlier fine-tune names it too (`starting_model`).

A model is a catalog base model (shared by everyone) or one of the user's own fine-tuned
models; another user's answers `NotFound`, exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from tuneforge.db.repositories.datasets import DatasetRepository
from tuneforge.db.repositories.exports import succeeded_exports
from tuneforge.db.repositories.models import ModelRepository
from tuneforge.db.tables import Dataset, Model, User
from tuneforge.errors import InvalidInput, ModelUnavailable, NotFound
from tuneforge.export.spec import GGUF_FORMATS
from tuneforge.inference.params import EngineName, ModelRef
from tuneforge.models.availability import Availability, availability
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.settings import Settings
from tuneforge.training.spec import TrainingBase

#: The settings that shape an adapter: a run that continues it must keep them.
ADAPTER_SHAPE = ("lora_r", "lora_alpha", "lora_target_modules", "use_rslora")


def catalog_entry(settings: Settings, model_id: str) -> CatalogEntry:
    entry = load_catalog(settings.catalog_file).get(model_id)
    if entry is None:
        raise InvalidInput(f"No model {model_id!r} in the catalog.")
    return entry


def runnable_entry(settings: Settings, model_id: str) -> CatalogEntry:
    """The catalog model `model_id`, if it can run here; `ModelUnavailable` saying why not
    (with `fields: ["base_model"]`), before anything is queued or loaded."""
    entry = catalog_entry(settings, model_id)
    require_usable(entry.name, availability(entry, settings.models_dir))
    return entry


def require_usable(name: str, state: Availability) -> None:
    if not state.usable:
        raise ModelUnavailable(
            f"{name} cannot run on this server: {state.reason[:1].lower()}{state.reason[1:]} "
            "Pick a model marked available.",
            {"fields": ["base_model"], "availability": state.model_dump()},
        )


def processed_dataset(
    session: Session, user: User, dataset_id: str, purpose: str, split: str
) -> Dataset:
    """The user's processed, ready dataset with rows in `split`, for `purpose` ("train",
    "evaluate"); `InvalidInput` saying what to do otherwise."""
    dataset = DatasetRepository(session, user).require(dataset_id)
    if dataset.kind != "processed":
        raise InvalidInput(
            f"The dataset {dataset.name!r} is raw: process it first (map its columns to "
            f"conversations), then {purpose} on the processed dataset."
        )
    if dataset.status != "ready":
        raise InvalidInput(f"The dataset {dataset.name!r} is {dataset.status}, not ready.")
    if not dataset.splits.get(split):
        if purpose == "train":
            raise InvalidInput(f"The dataset {dataset.name!r} has no training rows.")
        raise InvalidInput(
            f"The dataset {dataset.name!r} has no {split} rows: process it with a test split, "
            "or evaluate on the train split."
        )
    return dataset


def starting_model(session: Session, user: User, spec: TrainingBase) -> Model | None:
    """The model a run continues (`start_from`), if it names one: the user's own (another
    user's answers `NotFound`, like a missing one), made from the run's base model, and of a
    kind the run's method continues: an adapter with lora or qlora, full weights with full."""
    if spec.start_from is None:
        return None
    try:
        model = ModelRepository(session, user).require(spec.start_from)
    except NotFound:
        raise NotFound(
            f"No model {spec.start_from!r} to start from: use the id of one of your "
            "fine-tuned models.",
            {"fields": ["start_from"]},
        ) from None
    if model.base_model != spec.base_model:
        raise InvalidInput(
            f"{model.name!r} was fine-tuned from {model.base_model}, so a run that continues "
            f"it trains {model.base_model} too: set base_model to {model.base_model}.",
            {"fields": ["base_model", "start_from"]},
        )
    if model.kind == "adapter" and spec.method == "full":
        raise InvalidInput(
            f"{model.name!r} is a LoRA adapter: continue it with method lora (or qlora). "
            "To fine-tune every weight, start a full run from the base model.",
            {"fields": ["method", "start_from"]},
        )
    if model.kind != "adapter" and spec.method != "full":
        raise InvalidInput(
            f"{model.name!r} holds full weights: continue it with method full (adapters are "
            "trained over a catalog base model).",
            {"fields": ["method", "start_from"]},
        )
    if model.kind == "adapter":
        differ = [
            name
            for name in ADAPTER_SHAPE
            if name in model.spec and model.spec[name] != getattr(spec, name)
        ]
        if differ:
            settings = ", ".join(f"{name} {model.spec[name]}" for name in differ)
            raise InvalidInput(
                f"{model.name!r} is an adapter with {settings}, and a run that continues it "
                f"keeps its shape: set {settings}.",
                {"fields": differ},
            )
    return model


#: A fine-tuned model's availability: its files are in the artifact store.
STORED = Availability(state="available", reason="Stored on this server.")


@dataclass(frozen=True)
class ChatModel:
    """A model as the inference server loads it, with what the pages show of it."""

    id: str
    name: str
    ref: ModelRef
    base: str
    fine_tuned: bool
    created_at: datetime | None
    test_only: bool = False
    availability: Availability = STORED


#: The image projector beside a vision model's GGUF: `mmproj*.gguf` (llama.cpp's convention).
PROJECTOR_PREFIX = "mmproj"


@dataclass(frozen=True)
class ServedGguf:
    """A verified GGUF export's files, as `artifact_key/file name`: the text model, and the
    image projector when the export has one."""

    model: str
    projector: str | None = None


def served_ggufs(session: Session, model_ids: list[str]) -> dict[str, ServedGguf]:
    """For each of the models that has one, its newest succeeded (so verified) GGUF export's
    files: what llama.cpp serves the model from."""
    served: dict[str, ServedGguf] = {}
    for export in succeeded_exports(session, model_ids, sorted(GGUF_FORMATS)):
        names = [f["name"] for f in export.files if f["name"].endswith(".gguf")]
        model = next((n for n in names if not n.startswith(PROJECTOR_PREFIX)), None)
        projector = next((n for n in names if n.startswith(PROJECTOR_PREFIX)), None)
        if model is not None and export.model_id not in served:
            key = export.artifact_key
            served[export.model_id] = ServedGguf(
                f"{key}/{model}", f"{key}/{projector}" if projector else None
            )
    return served


def usable_models(session: Session, user: User, settings: Settings) -> list[ChatModel]:
    """The user's fine-tuned models (newest first), then the catalog's base models."""
    rows = ModelRepository(session, user).newest(offset=0, limit=500)[0]
    ggufs = served_ggufs(session, [row.id for row in rows])
    return [_fine_tuned(row, ggufs.get(row.id)) for row in rows] + _catalog(settings)


def usable_model(
    session: Session, user: User, settings: Settings, model_id: str, engine: EngineName = "auto"
) -> ChatModel:
    """The model `model_id` names (a catalog id or one of the user's model ids)."""
    found = next((m for m in _catalog(settings) if m.id == model_id), None)
    if found is None:
        try:
            row = ModelRepository(session, user).require(model_id)
        except NotFound:
            raise NotFound(
                f"No model {model_id!r}: use a catalog id such as gemma-3-270m or the id of one "
                "of your fine-tuned models."
            ) from None
        found = _fine_tuned(row, served_ggufs(session, [row.id]).get(row.id))
    require_usable(found.name, found.availability)
    if engine != "auto":
        found = replace(found, ref=found.ref.model_copy(update={"engine": engine}))
    return found


def _fine_tuned(row: Model, gguf: ServedGguf | None) -> ChatModel:
    kind = "adapter" if row.kind == "adapter" else "full"
    ref = ModelRef(
        base=row.base_model,
        artifact_key=row.artifact_key,
        kind=kind,
        gguf=gguf.model if gguf else None,
        mmproj=gguf.projector if gguf else None,
    )
    return ChatModel(
        id=row.id,
        name=row.name,
        ref=ref,
        base=row.base_model,
        fine_tuned=True,
        created_at=row.created_at,
    )


def _catalog(settings: Settings) -> list[ChatModel]:
    return [
        ChatModel(
            id=entry.id,
            name=entry.name,
            ref=ModelRef(base=entry.id),
            base=entry.id,
            fine_tuned=False,
            created_at=None,
            test_only=entry.test_only,
            availability=availability(entry, settings.models_dir),
        )
        for entry in load_catalog(settings.catalog_file).models
    ]
