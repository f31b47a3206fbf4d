"""The official `openai` client, unchanged, against a real TuneForge server: models, chat
completions (whole and streamed) from a fine-tuned model, completions, and scoping."""

from __future__ import annotations

import time

import pytest

from tests.conftest import add_user
from tests.fine_tuned import add_fine_tuned
from tests.server import server_env, server_process

pytestmark = [pytest.mark.slow, pytest.mark.surface, pytest.mark.timeout(300)]


def test_the_openai_client_works_unchanged(make_settings, tiny_adapter) -> None:
    import openai

    settings = make_settings()
    alice = add_user(settings, "alice")
    bob = add_user(settings, "bob")
    tuned = add_fine_tuned(settings, "alice", tiny_adapter)
    with server_process(server_env(settings)) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=alice, max_retries=0)
        ids = [m.id for m in client.models.list()]
        assert ids[0] == tuned and "tiny-random-gemma3" in ids
        messages = [{"role": "user", "content": "Say hello."}]
        whole = client.chat.completions.create(
            model=tuned,
            messages=messages,
            temperature=0,
            max_tokens=12,  # type: ignore[arg-type]
        )
        answer = whole.choices[0].message.content
        assert answer and whole.choices[0].finish_reason in {"stop", "length"}
        assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 12
        arrivals: list[float] = []
        pieces: list[str] = []
        finish = None
        for chunk in client.chat.completions.create(
            model=tuned,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
                arrivals.append(time.monotonic())
            else:
                assert chunk.usage is not None and chunk.usage.completion_tokens <= 12
        assert "".join(pieces) == answer and finish == whole.choices[0].finish_reason
        assert len(arrivals) > 2  # the answer came in pieces
        text = client.completions.create(
            model="tiny-random-gemma3", prompt="Once upon a time", max_tokens=6, temperature=0
        )
        assert text.choices[0].text and text.object == "text_completion"
        stranger = openai.OpenAI(base_url=f"{url}/v1", api_key=bob, max_retries=0)
        assert tuned not in [m.id for m in stranger.models.list()]
        with pytest.raises(openai.NotFoundError):
            stranger.chat.completions.create(model=tuned, messages=messages)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
