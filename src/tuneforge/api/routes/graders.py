"""Reward graders for GRPO runs and rewards evaluations: the library of grader types, and trying
a grader set on one completion before a run uses it (`services/graders.py`)."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.api.deps import CurrentUser, SessionDep, SettingsDep
from tuneforge.schemas.graders import GraderTrial, GraderTry, GraderType
from tuneforge.services import graders as service
from tuneforge.training.rewards.spec import library

router = APIRouter(tags=["trainings"])


@router.get("/trainings/graders/library", response_model=list[GraderType])
def grader_library(user: CurrentUser) -> list[GraderType]:
    """Every grader type: what it checks, an example, and its fields' schema."""
    return [GraderType.model_validate(entry) for entry in library()]


@router.post("/trainings/graders/try", response_model=GraderTrial)
def try_graders(
    trial: GraderTry, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> GraderTrial:
    """How each grader grades the completion, why, and the total reward. A judge grader calls
    its endpoint (the endpoint policy applies) with the key from your secrets."""
    return service.try_graders(session, user, settings, trial)
