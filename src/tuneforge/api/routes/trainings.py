"""Training runs: estimates and recommendations before launch, comparisons after; the catalog
of models and the presets. Runs themselves are jobs (`POST /jobs` with kind `train`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from tuneforge.api.deps import CurrentUser, SessionDep, SettingsDep
from tuneforge.api.openapi import errors
from tuneforge.models.availability import each_availability
from tuneforge.models.catalog import load_catalog
from tuneforge.schemas.trainings import (
    CatalogModelPublic,
    Comparison,
    EstimatePublic,
    SettingCheck,
)
from tuneforge.services import training as service
from tuneforge.training import presets
from tuneforge.training.presets import PresetInfo
from tuneforge.training.recommend import Recommendation
from tuneforge.training.registry import DEFAULT_TRAINER, TrainingSpec

router = APIRouter(tags=["trainings"])


@router.get("/catalog", response_model=list[CatalogModelPublic])
def list_catalog(settings: SettingsDep, user: CurrentUser) -> list[CatalogModelPublic]:
    """Every model, in picker order, with whether it can run on this server."""
    models = load_catalog(settings.catalog_file).models
    states = each_availability(models, settings.models_dir)
    return [
        CatalogModelPublic(**entry.model_dump(), availability=states[entry.id]) for entry in models
    ]


@router.post("/trainings/estimate", response_model=EstimatePublic, responses=errors(404))
def estimate(
    spec: TrainingSpec, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> EstimatePublic:
    return EstimatePublic(
        estimate=service.estimate_run(session, user, settings, spec),
        recommendations=service.recommendations(
            session, user, settings, spec.dataset_id, spec.base_model, spec.trainer
        ),
        checks=[
            SettingCheck(fields=list(f.fields), message=f.message, severity=f.severity)
            for f in service.setting_checks(session, user, settings, spec)
        ],
    )


@router.get(
    "/trainings/recommendations", response_model=list[Recommendation], responses=errors(404)
)
def recommendations(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    dataset_id: Annotated[str, Query(description="The processed dataset to train on.")],
    base_model: Annotated[str, Query(description="The catalog model to fine-tune.")],
    trainer: Annotated[
        str, Query(max_length=32, description="The training method's recipe, such as `sft`.")
    ] = DEFAULT_TRAINER,
) -> list[Recommendation]:
    return service.recommendations(session, user, settings, dataset_id, base_model, trainer)


@router.get("/trainings/compare", response_model=Comparison, responses=errors(404))
def compare(
    session: SessionDep,
    user: CurrentUser,
    ids: Annotated[list[str], Query(description="The training runs (job ids), 2 to 8.")],
) -> Comparison:
    return Comparison.model_validate(service.compare(session, user, ids))


@router.get("/trainings/presets", response_model=list[PresetInfo])
def list_presets(
    user: CurrentUser,
    trainer: Annotated[
        str | None,
        Query(max_length=32, description="Only the presets of this trainer, such as `dpo`."),
    ] = None,
) -> list[PresetInfo]:
    return [p for p in presets.list_presets() if trainer is None or p.trainer == trainer]


@router.get("/trainings/presets/{preset_id}", response_model=dict[str, Any])
def get_preset(preset_id: str, user: CurrentUser) -> dict[str, Any]:
    return presets.load_preset(preset_id)
