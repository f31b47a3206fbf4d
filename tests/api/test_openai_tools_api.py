"""Tool calling end to end: a tiny Gemma fine-tuned on tool-calling conversations by the SFT
recipe learns to call the tool, and the official `openai` client gets the call back from `/v1`
as `tool_calls` (whole and streamed), sends the tool's result, and gets the final answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import add_user
from tests.fine_tuned import ANSWER, QUESTION, TOOLS, add_fine_tuned
from tests.server import server_env, server_process

pytestmark = [pytest.mark.slow, pytest.mark.surface, pytest.mark.timeout(300)]


def test_the_openai_client_gets_tool_calls_and_the_answer_after_the_result(
    make_settings, tool_calling_model: Path
) -> None:
    import openai

    settings = make_settings()
    alice = add_user(settings, "alice")
    tuned = add_fine_tuned(settings, "alice", tool_calling_model, name="weather", kind="full")
    with server_process(server_env(settings)) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=alice, max_retries=0)
        asked: list[Any] = [{"role": "user", "content": QUESTION}]
        whole = client.chat.completions.create(
            model=tuned,
            messages=asked,
            tools=TOOLS,
            temperature=0,
            max_tokens=40,  # type: ignore[arg-type]
        )
        choice = whole.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        [call] = choice.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Oslo"}

        pieces: list[str] = []
        streamed: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in client.chat.completions.create(
            model=tuned,
            messages=asked,
            tools=TOOLS,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=40,
            stream=True,
        ):
            delta = chunk.choices[0].delta
            pieces.append(delta.content or "")
            for part in delta.tool_calls or []:
                got = streamed.setdefault(part.index, {"name": "", "arguments": ""})
                got["name"] += part.function.name or ""  # type: ignore[union-attr]
                got["arguments"] += part.function.arguments or ""  # type: ignore[union-attr]
            finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls" and "".join(pieces) == ""
        assert [(c["name"], json.loads(c["arguments"])) for c in streamed.values()] == [
            ("get_weather", {"city": "Oslo"})
        ]

        followed = [
            *asked,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "cold"},
        ]
        final = client.chat.completions.create(
            model=tuned,
            messages=followed,
            tools=TOOLS,
            temperature=0,
            max_tokens=40,  # type: ignore[arg-type]
        )
        assert final.choices[0].finish_reason == "stop"
        assert final.choices[0].message.content == ANSWER
        assert not final.choices[0].message.tool_calls

        # Without tools offered, the same model is not told about them and no call is parsed.
        plain = client.chat.completions.create(
            model=tuned,
            messages=asked,
            tool_choice="none",
            tools=TOOLS,
            max_tokens=8,  # type: ignore[arg-type]
        )
        assert plain.choices[0].finish_reason in {"stop", "length"}
        assert not plain.choices[0].message.tool_calls
        with pytest.raises(openai.UnprocessableEntityError):
            client.chat.completions.create(
                model=tuned,
                messages=asked,
                tools=TOOLS,
                tool_choice="required",  # type: ignore[arg-type]
            )
        with pytest.raises(openai.UnprocessableEntityError):  # a result with no call before it
            client.chat.completions.create(
                model=tuned,
                messages=[*asked, {"role": "tool", "tool_call_id": "call_x", "content": "?"}],  # type: ignore[list-item]
            )
