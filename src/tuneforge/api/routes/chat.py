"""Chat with a base or fine-tuned model, streamed as Server-Sent Events or answered at once.

Sampling values a request leaves out are the model's defaults (`inference/sampling.py`). A
streamed answer sends `status` events while the model loads or waits, and its generation stops
when the client goes away."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tuneforge.api.deps import (
    CurrentUser,
    InferenceDep,
    SessionDep,
    SettingsDep,
    end_transaction,
)
from tuneforge.api.openapi import errors
from tuneforge.errors import DomainError
from tuneforge.inference.engine import Delta, Finished, Status
from tuneforge.inference.params import Turn
from tuneforge.inference.responses import ClosingStream
from tuneforge.models.tool_format import CallStream, openai_tool_calls, split_answer
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
    return ChatModelList(
        items=[
            ChatModelPublic.model_validate(
                {**m.__dict__, "images": service.takes_images(settings, m)}
            )
            for m in models
        ]
    )


@router.post(
    "/chat",
    response_model=ChatAnswer,
    response_model_exclude_none=True,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "With `stream` (the default): `status` events with `{phase, message}` "
            "while nothing is written yet (phase `starting`, `loading` or `queued`), `delta` "
            "events with `{text}`, with tools a `tool_calls` event with `{tool_calls}` (OpenAI's "
            "shape) when the model calls them, then one `done` with `{finish_reason, usage, "
            "engine}` (finish reason `tool_calls` after calls), or an "
            "`error` if it broke off (a model that fails to load, too). Closing the connection "
            "stops the generation.",
        },
        **errors(404),
    },
)
async def chat(
    body: ChatRequest,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    inference: InferenceDep,
    request: Request,
) -> ChatAnswer | StreamingResponse:
    """Answer a conversation with one model (Gemma's chat template, stops at `<end_of_turn>`).
    Sampling values left out are the model's defaults: greedy and 128 tokens for a pre-trained
    base model and its fine-tunes, Gemma's recommended sampling for instruction-tuned ones."""
    model, generate = await run_in_threadpool(service.generation, session, user, settings, body)
    await end_transaction(session)
    markers = service.chat_format(settings, model).tool_markers if body.tools else None
    if not body.stream:
        text, done = await inference.complete(generate)
        content, calls = split_answer(text, markers) if markers else (text, [])
        return ChatAnswer(
            model=model.id,
            message=Turn(
                role="assistant",
                content=content.strip() if calls else content,
                tool_calls=openai_tool_calls(calls) or None,  # type: ignore[arg-type]
            ),
            finish_reason="tool_calls" if calls else done.reason,
            usage=Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens),
            engine=done.engine,
            engine_note=done.note,
        )
    events = request.app.state.stopping.until(inference.events(generate))
    # Until the inference server accepts the request (past a `starting` status), a model that
    # cannot be served still answers with an HTTP error.
    opening = [await anext(events)]
    while isinstance(opening[-1], Status) and opening[-1].phase == "starting":
        opening.append(await anext(events))

    splitter = CallStream(markers) if markers else None

    async def sse() -> AsyncGenerator[str, None]:
        try:
            for event in opening:
                yield _sse(event)
            async for event in events:
                if splitter is None:
                    yield _sse(event)
                elif isinstance(event, Delta):
                    text = splitter.feed(event.text)
                    if text:
                        yield _sse(Delta(text))
                elif isinstance(event, Finished):
                    rest, found = splitter.finish()
                    if rest:
                        yield _sse(Delta(rest))
                    if found:
                        made = json.dumps({"tool_calls": openai_tool_calls(found)})
                        yield f"event: tool_calls\ndata: {made}\n\n"
                        event = dataclasses.replace(event, reason="tool_calls")
                    yield _sse(event)
                else:
                    yield _sse(event)
        except DomainError as exc:
            error = {"code": exc.code, "message": exc.message}
            yield f"event: error\ndata: {json.dumps(error)}\n\n"
        finally:
            await events.aclose()  # the client went away: the inference server stops

    return ClosingStream(
        sse(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: Delta | Finished | Status) -> str:
    if isinstance(event, Delta):
        return f"event: delta\ndata: {json.dumps({'text': event.text})}\n\n"
    if isinstance(event, Status):
        status = {"phase": event.phase, "message": event.message}
        return f"event: status\ndata: {json.dumps(status)}\n\n"
    assert isinstance(event, Finished)
    done = {
        "finish_reason": event.reason,
        "usage": {
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
        },
        "engine": event.engine,
        "engine_note": event.note,
    }
    return f"event: done\ndata: {json.dumps(done)}\n\n"
