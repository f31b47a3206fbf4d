"""Chat with an image on the tiny Gemma 4 through `POST /api/v1/chat` and the OpenAI-compatible
endpoint: the prompt holds the processor's ids (the image's own number of soft tokens) and the
answer is transformers' greedy `generate` with Gemma 4's processor."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from tests.api.test_chat_images_api import data_url, turn
from tests.conftest import add_user, bearer
from tests.models.test_gemma4_vision import TINY4, gemma4_processor, picture
from tuneforge.models.chat_template import GEMMA_4

pytestmark = [pytest.mark.timeout(300), pytest.mark.heavy]
NEW_TOKENS = 6
QUESTION = "Which colour is the square?"


def reference(models_dir: Path, image: bytes) -> tuple[int, str]:
    """The prompt's length and the greedy answer, by transformers with Gemma 4's processor."""
    from PIL import Image

    from tuneforge.models.loading import load_causal_lm, load_tokenizer, model_dir

    assert TINY4 is not None
    path = model_dir(TINY4, models_dir)
    content = [{"type": "image"}, {"type": "text", "text": QUESTION}]
    text = GEMMA_4.render([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = gemma4_processor(path)(
        text=text,
        images=[Image.open(io.BytesIO(image)).convert("RGB")],
        return_tensors="pt",
        add_special_tokens=False,
    )
    model = load_causal_lm(path, torch.float32)
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=[1, 106],
            pad_token_id=0,
        )
    prompt = inputs["input_ids"].shape[1]
    return prompt, str(load_tokenizer(path).decode(out[0, prompt:], skip_special_tokens=True))


def test_gemma4_chats_with_an_image(make_client, settings, models_dir: Path) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    models = client.get("/api/v1/chat/models", headers=alice).json()["items"]
    seeing = {m["id"]: m["images"] for m in models}
    assert seeing["tiny-random-gemma4"] is True  # the Playground offers images for it
    image = picture(300, 200, "red")
    prompt_tokens, answer = reference(models_dir, image)
    native = client.post(
        "/api/v1/chat",
        json={
            "model": "tiny-random-gemma4",
            "messages": [turn(data_url(image), text=QUESTION)],
            "temperature": 0,
            "max_new_tokens": NEW_TOKENS,
            "stream": False,
        },
        headers=alice,
    )
    assert native.status_code == 200, native.text
    assert native.json()["usage"]["prompt_tokens"] == prompt_tokens
    assert native.json()["message"]["content"].strip() == answer.strip()
    openai = client.post(
        "/v1/chat/completions",
        json={
            "model": "tiny-random-gemma4",
            "messages": [turn(data_url(image), text=QUESTION)],
            "temperature": 0,
            "max_tokens": NEW_TOKENS,
        },
        headers=alice,
    )
    assert openai.status_code == 200, openai.text
    assert openai.json()["usage"]["prompt_tokens"] == prompt_tokens
    assert openai.json()["choices"][0]["message"]["content"].strip() == answer.strip()
