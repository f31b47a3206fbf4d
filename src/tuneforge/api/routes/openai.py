"""The OpenAI-compatible API under `/v1`: the official `openai` client works against it.

Authenticated by the same bearer API tokens as `/api/v1` and scoped the same way: a caller sees
the catalog's base models and their own fine-tuned models, and another user's model is 404.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

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
from tuneforge.api.stopping import Stopping
from tuneforge.errors import DomainError, InvalidInput
from tuneforge.inference.client import InferenceClient
from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.params import Generate, GenerationParams
from tuneforge.inference.responses import ClosingStream
from tuneforge.models.tool_format import CallStream, ToolMarkers, openai_tool_calls, split_answer
from tuneforge.schemas.openai import ChatCompletionRequest, CompletionRequest, Sampling
from tuneforge.services import chat as service

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models")
def list_models(session: SessionDep, user: CurrentUser, settings: SettingsDep) -> dict[str, Any]:
    models = service.chat_models(session, user, settings)
    return {
        "object": "list",
        "data": [
            {
                "id": m.id,
                "object": "model",
                "created": int(m.created_at.timestamp()) if m.created_at else 0,
                "owned_by": user.username if m.fine_tuned else "tuneforge",
            }
            for m in models
        ],
    }


@router.post("/chat/completions", response_model=None, responses=errors(404))
async def chat_completions(
    body: ChatCompletionRequest,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    inference: InferenceDep,
    request: Request,
) -> dict[str, Any] | StreamingResponse:
    try:
        messages, tools = body.turns(), body.offered_tools()
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    model, generate = await run_in_threadpool(
        service.prepare,
        session,
        user,
        settings,
        body.model,
        _params(body, body.max_new_tokens),
        messages,
        None,
        "auto",
        tools,
    )
    await end_transaction(session)
    markers = service.chat_format(settings, model).tool_markers if tools else None
    return await _answer(
        inference, request.app.state.stopping, generate, body, chat=True, markers=markers
    )


@router.post("/completions", response_model=None, responses=errors(404))
async def completions(
    body: CompletionRequest,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    inference: InferenceDep,
    request: Request,
) -> dict[str, Any] | StreamingResponse:
    _, generate = await run_in_threadpool(
        service.prepare,
        session,
        user,
        settings,
        body.model,
        _params(body, body.max_tokens),
        None,
        body.prompt,
    )
    await end_transaction(session)
    return await _answer(inference, request.app.state.stopping, generate, body, chat=False)


def _params(body: Sampling, max_new_tokens: int) -> GenerationParams:
    try:
        return GenerationParams.model_validate(body.generation(max_new_tokens))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


async def _answer(
    inference: InferenceClient,
    stopping: Stopping,
    generate: Generate,
    body: Sampling,
    *,
    chat: bool,
    markers: ToolMarkers | None = None,
) -> dict[str, Any] | StreamingResponse:
    """The answer, whole or streamed; with tool `markers` (tools were offered), the calls the
    model wrote come back as `tool_calls` (finish reason `tool_calls`)."""
    head = {
        "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": body.model,
    }
    if not body.stream:
        text, done = await inference.complete(generate)
        reason: str = done.reason
        if chat:
            content, calls = split_answer(text, markers) if markers else (text, [])
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if calls:
                message = {"role": "assistant", "content": content.strip() or None}
                message["tool_calls"] = openai_tool_calls(calls)
                reason = "tool_calls"
            choice = {"index": 0, "message": message}
        else:
            prompt = body.prompt if isinstance(body, CompletionRequest) and body.echo else ""
            choice = {"index": 0, "text": prompt + text, "logprobs": None}
        return {
            **head,
            "choices": [{**choice, "finish_reason": reason}],
            "usage": _usage(done),
            "system_fingerprint": _fingerprint(done),
        }
    events = stopping.until(inference.stream(generate))
    first = await anext(events)  # a model that cannot load answers with an HTTP error
    head["object"] = "chat.completion.chunk" if chat else "text_completion"

    def chunk(
        text: str | None, reason: str | None, calls: list[dict[str, Any]] | None = None
    ) -> str:
        if chat:
            delta: dict[str, Any] = {} if text is None else {"content": text}
            if calls:
                delta = {"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None}
        return f"data: {json.dumps({**head, 'choices': [{**choice, 'finish_reason': reason}]})}\n\n"

    async def stream() -> AsyncGenerator[str, None]:
        try:
            async for line in _lines():
                yield line
        except DomainError as exc:  # it broke off: OpenAI's error chunk, and no `[DONE]`
            error = {"message": exc.message, "type": "server_error", "code": exc.code}
            yield f"data: {json.dumps({'error': error})}\n\n"
        finally:
            await events.aclose()  # the client went away: the inference server stops

    async def _lines() -> AsyncIterator[str]:
        if chat:
            opening = {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ],
            }
            yield f"data: {json.dumps(opening)}\n\n"
        calls = CallStream(markers) if markers else None
        async for event in _chain(first, events):
            if isinstance(event, Delta):
                text = calls.feed(event.text) if calls else event.text
                if text:
                    yield chunk(text, None)
            else:
                reason: str = event.reason
                if calls:
                    rest, found = calls.finish()
                    if rest:
                        yield chunk(rest, None)
                    if found:
                        yield chunk(None, None, openai_tool_calls(found))
                        reason = "tool_calls"
                head["system_fingerprint"] = _fingerprint(event)
                yield chunk(None, reason)
                if body.include_usage:
                    yield f"data: {json.dumps({**head, 'choices': [], 'usage': _usage(event)})}\n\n"
        yield "data: [DONE]\n\n"

    return ClosingStream(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _chain(
    first: Delta | Finished, rest: AsyncIterator[Delta | Finished]
) -> AsyncIterator[Delta | Finished]:
    yield first
    async for event in rest:
        yield event


def _fingerprint(done: Finished) -> str:
    """OpenAI's `system_fingerprint` (the backend configuration that answered): the engine,
    such as `tuneforge-llama.cpp`."""
    return f"tuneforge-{done.engine}"


def _usage(done: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }
