"""Chat as the web process sees it: which models a user may talk to (`jobs/inputs.py` resolves
them, as it does for evaluations), how each samples by default (`inference/sampling.py`) and what
the inference server needs for a request."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.inference.params import EngineName, Generate, GenerationParams, Turn
from tuneforge.inference.sampling import SamplingDefaults, sampling_defaults
from tuneforge.jobs.inputs import ChatModel
from tuneforge.jobs.inputs import usable_model as chat_model
from tuneforge.jobs.inputs import usable_models as chat_models
from tuneforge.models.catalog import load_catalog
from tuneforge.schemas.chat import ChatRequest
from tuneforge.settings import Settings

__all__ = ["ChatModel", "chat_model", "chat_models", "defaults", "generation", "prepare"]


def defaults(settings: Settings, model: ChatModel) -> SamplingDefaults:
    """The sampling `model` gets unless told otherwise: by its catalog base's kind."""
    entry = load_catalog(settings.catalog_file).get(model.base)
    return sampling_defaults(entry, fine_tuned=model.fine_tuned, name=model.name)


def generation(
    session: Session, user: User, settings: Settings, request: ChatRequest
) -> tuple[ChatModel, Generate]:
    """What to send the inference server for a chat request (the model checked as the user).
    Sampling values the request leaves out are the model's defaults (see `defaults`)."""
    messages = list(request.messages)
    if request.system:
        if messages[0].role == "system":
            raise InvalidInput("Give the system prompt either as `system` or as a first message.")
        messages.insert(0, Turn(role="system", content=request.system))
    model = chat_model(session, user, settings, request.model, request.engine)
    given = request.model_dump(
        include=set(GenerationParams.model_fields) & request.model_fields_set
    )
    params = GenerationParams.model_validate(
        {**defaults(settings, model).params.model_dump(), **given}
    )
    return _generate(model, params, messages, None)


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
    return _generate(
        chat_model(session, user, settings, model_id, engine), params, messages, prompt
    )


def _generate(
    model: ChatModel, params: GenerationParams, messages: list[Turn] | None, prompt: str | None
) -> tuple[ChatModel, Generate]:
    try:
        generate = Generate(model=model.ref, messages=messages, prompt=prompt, params=params)
        generate.text()
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return model, generate
