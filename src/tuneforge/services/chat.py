"""Chat as the web process sees it: which models a user may talk to (`jobs/inputs.py` resolves
them, as it does for evaluations) and what the inference server needs for a request."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.inference.params import EngineName, Generate, GenerationParams, Turn
from tuneforge.jobs.inputs import ChatModel
from tuneforge.jobs.inputs import usable_model as chat_model
from tuneforge.jobs.inputs import usable_models as chat_models
from tuneforge.schemas.chat import ChatRequest
from tuneforge.settings import Settings

__all__ = ["ChatModel", "chat_model", "chat_models", "generation", "prepare"]


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
