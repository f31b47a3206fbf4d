"""Chat with a base or fine-tuned model, streamed as Server-Sent Events or answered at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tuneforge.api.deps import (
    CurrentUser,
    InferenceDep,
    SessionDep,
    SettingsDep,
    end_transaction,
)
from tuneforge.errors import DomainError
from tuneforge.inference.engine import Delta, Event, Finished
from tuneforge.schemas.chat import (
    ChatAnswer,
    ChatModelList,
    ChatModelPublic,
    ChatRequest,
    Usage,
)
from tuneforge.services import chat as service

router = APIRouter(tags=["chat"])


@router.get("/chat/models", response_model=ChatModelList)
def chat_models(session: SessionDep, user: CurrentUser, settings: SettingsDep) -> ChatModelList:
    """Models you can chat with: your fine-tuned models, then the catalog's base models."""
    models = service.chat_models(session, user, settings)
    return ChatModelList(items=[ChatModelPublic.model_validate(m.__dict__) for m in models])


@router.post(
    "/chat",
    response_model=ChatAnswer,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "With `stream` (the default): `delta` events with `{text}`, then one "
            "`done` with `{finish_reason, usage, engine}`, or an `error` if it broke off.",
        }
    },
)
async def chat(
    body: ChatRequest,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    inference: InferenceDep,
) -> ChatAnswer | StreamingResponse:
    """Answer a conversation with one model (Gemma's chat template, stops at `<end_of_turn>`)."""
    model, generate = await run_in_threadpool(service.generation, session, user, settings, body)
    await end_transaction(session)
    if not body.stream:
        text, done = await inference.complete(generate)
        return ChatAnswer(
            model=model.id,
            message={"role": "assistant", "content": text},  # type: ignore[arg-type]
            finish_reason=done.reason,
            usage=Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens),
            engine=done.engine,
        )
    events = inference.stream(generate)
    first = await anext(events)  # a model that cannot load answers with an HTTP error

    async def sse() -> AsyncIterator[str]:
        yield _sse(first)
        try:
            async for event in events:
                yield _sse(event)
        except DomainError as exc:
            error = {"code": exc.code, "message": exc.message}
            yield f"event: error\ndata: {json.dumps(error)}\n\n"

    return StreamingResponse(
        sse(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: Event) -> str:
    if isinstance(event, Delta):
        return f"event: delta\ndata: {json.dumps({'text': event.text})}\n\n"
    assert isinstance(event, Finished)
    done = {
        "finish_reason": event.reason,
        "usage": {
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
        },
        "engine": event.engine,
    }
    return f"event: done\ndata: {json.dumps(done)}\n\n"
