"""Chat with the tiny random Gemma 4 through the API and the OpenAI-compatible endpoint: the
server renders Gemma 4's format (the prompt's tokens are transformers' `apply_chat_template`
on the model's own template) and answers what transformers' greedy `generate` answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import add_user, bearer
from tuneforge.models.catalog import catalog

pytestmark = [pytest.mark.timeout(300), pytest.mark.heavy]
MESSAGES = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Which colour is the sky?"},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "And grass?"},
]
NEW_TOKENS = 8


def reference(models_dir: Path) -> tuple[int, str]:
    """The prompt's length and the greedy answer, by transformers on the model's directory."""
    from tuneforge.models.loading import load_causal_lm, load_tokenizer, model_dir

    entry = catalog().get("tiny-random-gemma4")
    assert entry is not None
    path = model_dir(entry, models_dir)
    tokenizer = load_tokenizer(path)
    ids = torch.tensor(
        [tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)]
    )
    model = load_causal_lm(path, torch.float32)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        eos_token_id=[1, 106],
        pad_token_id=0,
    )
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    return ids.shape[1], str(answer).strip()


def test_gemma4_chats_in_its_own_format(make_client, settings, models_dir: Path) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    prompt_tokens, answer = reference(models_dir)
    assert answer  # the random model writes a few tokens before it stops
    native = client.post(
        "/api/v1/chat",
        json={
            "model": "tiny-random-gemma4",
            "messages": MESSAGES,
            "temperature": 0,
            "max_new_tokens": NEW_TOKENS,
            "stream": False,
        },
        headers=alice,
    )
    assert native.status_code == 200, native.text
    assert native.json()["usage"]["prompt_tokens"] == prompt_tokens
    assert native.json()["message"]["content"].strip() == answer
    openai = client.post(
        "/v1/chat/completions",
        json={
            "model": "tiny-random-gemma4",
            "messages": MESSAGES,
            "temperature": 0,
            "max_tokens": NEW_TOKENS,
        },
        headers=alice,
    )
    assert openai.status_code == 200, openai.text
    assert openai.json()["usage"]["prompt_tokens"] == prompt_tokens
    assert openai.json()["choices"][0]["message"]["content"].strip() == answer
