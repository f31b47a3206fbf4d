"""Which models a user may chat with, and what the inference server needs to load each.

A chat model is a catalog base model (shared by everyone) or one of the user's own fine-tuned
models; another user's model answers `NotFound`, exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneforge.db.tables import Model, User
from tuneforge.inference.params import EngineName, Generate, GenerationParams, ModelRef, Turn
from tuneforge.models.catalog import load_catalog
from tuneforge.schemas.chat import ChatRequest
from tuneforge.errors import InvalidInput, NotFound
from tuneforge.services.exports import served_ggufs
from tuneforge.services.models import ModelRepository, get_model
from tuneforge.settings import Settings


@dataclass(frozen=True)
class ChatModel:
    id: str
    name: str
    ref: ModelRef
    base: str
    fine_tuned: bool
    created_at: datetime | None
    test_only: bool = False


def chat_models(session: Session, user: User, settings: Settings) -> list[ChatModel]:
    """The user's fine-tuned models (newest first), then the catalog's base models."""
    rows = ModelRepository(session, user).page(
        select(Model), offset=0, limit=500, order=(Model.created_at.desc(), Model.id)
    )[0]
    ggufs = served_ggufs(session, [row.id for row in rows])
    return [_fine_tuned(row, ggufs.get(row.id)) for row in rows] + _catalog(settings)


def chat_model(
    session: Session, user: User, settings: Settings, model_id: str, engine: EngineName = "auto"
) -> ChatModel:
    """The model `model_id` names (a catalog id or one of the user's model ids)."""
    found = next((m for m in _catalog(settings) if m.id == model_id), None)
    if found is None:
        try:
            row = get_model(session, user, model_id)
            found = _fine_tuned(row, served_ggufs(session, [row.id]).get(row.id))
        except NotFound:
            raise NotFound(
                f"No model {model_id!r}: use a catalog id such as gemma-3-270m or the id of one "
                "of your fine-tuned models."
            ) from None
    if engine != "auto":
        found = replace(found, ref=found.ref.model_copy(update={"engine": engine}))
    return found


def _fine_tuned(row: Model, gguf: str | None) -> ChatModel:
    kind = "adapter" if row.kind == "adapter" else "full"
    return ChatModel(
        id=row.id,
        name=row.name,
        ref=ModelRef(base=row.base_model, artifact_key=row.artifact_key, kind=kind, gguf=gguf),
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
        )
        for entry in load_catalog(settings.catalog_file).models
    ]


def generation(
    session: Session, user: User, settings: Settings, request: ChatRequest
) -> tuple[ChatModel, Generate]:
    """What to send the inference server for a chat request (the model checked as the user)."""
    messages = list(request.messages)
    if request.system:
        if messages[0].role == "system":
            raise InvalidInput("Give the system prompt either as `system` or as a first message.")
        messages.insert(0, Turn(role="system", content=request.system))
    params = GenerationParams.model_validate(
        request.model_dump(include=set(GenerationParams.model_fields))
    )
    return prepare(session, user, settings, request.model, params, messages, engine=request.engine)


def prepare(
    session: Session,
    user: User,
    settings: Settings,
    model_id: str,
    params: GenerationParams,
    messages: list[Turn] | None = None,
    prompt: str | None = None,
    engine: EngineName = "auto",
) -> tuple[ChatModel, Generate]:
    """A generation of `model_id` (checked as the user) for a conversation or a raw prompt."""
    model = chat_model(session, user, settings, model_id, engine)
    try:
        generate = Generate(model=model.ref, messages=messages, prompt=prompt, params=params)
        generate.text()
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return model, generate
