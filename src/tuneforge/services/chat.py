"""Chat as the web process sees it: which models a user may talk to (`jobs/inputs.py` resolves
them, as it does for evaluations), how each samples by default (`inference/sampling.py`) and what
the inference server needs for a request."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.inference.params import EngineName, Generate, GenerationParams, Tool, Turn
from tuneforge.inference.sampling import SamplingDefaults, sampling_defaults
from tuneforge.jobs.inputs import ChatModel
from tuneforge.jobs.inputs import usable_model as chat_model
from tuneforge.jobs.inputs import usable_models as chat_models
from tuneforge.models.catalog import load_catalog
from tuneforge.models.chat_template import ChatFormat, format_of
from tuneforge.schemas.chat import ChatRequest, ChatTurn
from tuneforge.services.chat_images import image_count, resolve_turns
from tuneforge.settings import Settings

__all__ = [
    "ChatModel",
    "chat_format",
    "chat_model",
    "chat_models",
    "defaults",
    "generation",
    "prepare",
    "takes_images",
]


#: Families whose image prompts TuneForge writes (Gemma 3's `<start_of_image>` frame).
IMAGE_FAMILIES = frozenset({"gemma-3", "gemma-4"})


def takes_images(settings: Settings, model: ChatModel) -> bool:
    """Whether `model` reads images here: its catalog base reads images (an image encoder, or
    the Gemma 4 12B's patch projection), of a family whose image prompts TuneForge writes."""
    entry = load_catalog(settings.catalog_file).get(model.base)
    return entry is not None and entry.vision is not None and entry.family in IMAGE_FAMILIES


def chat_format(settings: Settings, model: ChatModel) -> ChatFormat:
    """The chat format `model` speaks (its catalog base's; fine-tunes speak their base's)."""
    return format_of(load_catalog(settings.catalog_file).get(model.base))


def defaults(settings: Settings, model: ChatModel) -> SamplingDefaults:
    """The sampling `model` gets unless told otherwise: by its catalog base's kind."""
    entry = load_catalog(settings.catalog_file).get(model.base)
    return sampling_defaults(entry, fine_tuned=model.fine_tuned, name=model.name)


def generation(
    session: Session, user: User, settings: Settings, request: ChatRequest
) -> tuple[ChatModel, Generate]:
    """What to send the inference server for a chat request (the model checked as the user,
    before any image is read). Sampling values the request leaves out are the model's defaults
    (see `defaults`)."""
    model = chat_model(session, user, settings, request.model, request.engine)
    _require_images(settings, model, image_count(request.messages))
    messages, images = resolve_turns(request.messages, user, settings)
    if request.system:
        if messages[0].role == "system":
            raise InvalidInput("Give the system prompt either as `system` or as a first message.")
        messages.insert(0, Turn(role="system", content=request.system))
    given = request.model_dump(
        include=set(GenerationParams.model_fields) & request.model_fields_set
    )
    params = GenerationParams.model_validate(
        {**defaults(settings, model).params.model_dump(), **given}
    )
    return _generate(settings, model, params, messages, None, images, request.tools)


def prepare(
    session: Session,
    user: User,
    settings: Settings,
    model_id: str,
    params: GenerationParams,
    messages: list[ChatTurn] | None = None,
    prompt: str | None = None,
    engine: EngineName = "auto",
    tools: list[Tool] | None = None,
) -> tuple[ChatModel, Generate]:
    """A generation of `model_id` (checked as the user) for a conversation (with the tools it
    may call) or a raw prompt."""
    model = chat_model(session, user, settings, model_id, engine)
    _require_images(settings, model, image_count(messages or []))
    turns, images = resolve_turns(messages, user, settings) if messages else (None, [])
    return _generate(settings, model, params, turns, prompt, images, tools)


def _require_images(settings: Settings, model: ChatModel, images: int) -> None:
    """Refuse images for a model that does not read them (before any image is read)."""
    if images and not takes_images(settings, model):
        raise InvalidInput(
            f"{model.name} does not take images: pick a vision model (such as Gemma 3 4B) or a "
            "fine-tune of one, or send text only.",
            {"fields": ["messages"], "reason": "text_only_model"},
        )


def _generate(
    settings: Settings,
    model: ChatModel,
    params: GenerationParams,
    messages: list[Turn] | None,
    prompt: str | None,
    images: list[bytes],
    tools: list[Tool] | None = None,
) -> tuple[ChatModel, Generate]:
    ref = model.ref.model_copy(update={"images": True}) if images else model.ref
    try:
        generate = Generate(
            model=ref,
            messages=messages,
            prompt=prompt,
            params=params,
            images=Generate.encode(images),
            tools=tools,
        )
        generate.text(chat_format(settings, model))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return model, generate
