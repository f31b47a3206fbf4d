"""The encoder-free Gemma 4 (the 12B's layout, as `tiny-random-gemma4-unified`) through the API:
it trains on an image dataset with its preset, its run samples held-out images, and the
fine-tune's answer depends on the pixels; it chats with an image through `POST /api/v1/chat`,
the prompt holding the image's own soft tokens and the answer transformers' greedy one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.api.test_chat_images_api import data_url, turn
from tests.api.test_jobs_api import wait_status
from tests.api.test_vision_training_api import QUESTION, image_dataset
from tests.conftest import add_user, bearer
from tests.images import coloured_images
from tests.models.gemma4_unified import TINY_UNIFIED_ID, tiny_unified_dir
from tests.models.test_gemma4_vision import picture
from tuneforge.models.chat_template import GEMMA_4
from tuneforge.storage import ArtifactStore

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(300)]
NEW_TOKENS = 6


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice"))


def first_logits(model, model_dir: Path, image: bytes) -> torch.Tensor:
    """The model's logits for the first answer token to the image question."""
    from tuneforge.export.vision_check import image_inputs, image_prompt

    inputs = image_inputs(model_dir, image, image_prompt(QUESTION, chat=GEMMA_4))
    with torch.no_grad():
        return model(**inputs).logits[0, -1]


def test_the_unified_gemma_4_trains_on_images_through_the_api(api, settings) -> None:
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm

    client, alice = api
    dataset = image_dataset(client, alice, coloured_images(16, seed=5))
    preset = client.get(f"/api/v1/trainings/presets/{TINY_UNIFIED_ID}_lora", headers=alice)
    assert preset.status_code == 200, preset.text
    spec = {**preset.json(), "dataset_id": dataset["id"], "check_examples": 0, "max_steps": 6}
    spec["sample_max_new_tokens"] = 4
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert job.status_code == 201, job.text
    done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=240)
    metrics = client.get(f"/api/v1/jobs/{job.json()['id']}/metrics", headers=alice).json()
    last = metrics["samples"][-1]["items"]
    assert last and all(item["images"][0].startswith("data:image/jpeg") for item in last)
    assert all(item["prompt"] == QUESTION for item in last)

    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=alice).json()
    local = Path(settings.data_dir) / "tuned"
    ArtifactStore(settings.resolved_storage_url).get_dir(model["artifact_key"], local)
    directory = tiny_unified_dir(settings.models_dir)
    tuned = PeftModel.from_pretrained(load_causal_lm(directory, torch.float32), local).eval()
    red, blue = (picture(300, 200, colour) for colour in ("red", "blue"))
    moved = (first_logits(tuned, directory, red) - first_logits(tuned, directory, blue)).abs()
    assert float(moved.max()) > 1e-3  # the pixels reach the fine-tune's answer


def test_the_unified_gemma_4_chats_with_an_image(api, settings) -> None:
    from tuneforge.export.vision_check import image_inputs, image_prompt
    from tuneforge.models.loading import load_causal_lm, load_tokenizer
    from tuneforge.models.vision import vision_info

    client, alice = api
    models = client.get("/api/v1/chat/models", headers=alice).json()["items"]
    assert {m["id"]: m["images"] for m in models}[TINY_UNIFIED_ID] is True
    image = picture(300, 200, "red")
    directory = tiny_unified_dir(settings.models_dir)
    inputs = image_inputs(directory, image, image_prompt(QUESTION, chat=GEMMA_4))
    info = vision_info(directory)
    assert info is not None
    assert int((inputs["input_ids"] == info.image_token_id).sum()) == info.soft_tokens(image) == 60
    with torch.inference_mode():
        out = load_causal_lm(directory, torch.float32).generate(
            **inputs,
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=[1, 106],
            pad_token_id=0,
        )
    prompt = inputs["input_ids"].shape[1]
    answer = load_tokenizer(directory).decode(out[0, prompt:], skip_special_tokens=True)
    reply = client.post(
        "/api/v1/chat",
        json={
            "model": TINY_UNIFIED_ID,
            "messages": [turn(data_url(image), text=QUESTION)],
            "temperature": 0,
            "max_new_tokens": NEW_TOKENS,
            "stream": False,
        },
        headers=alice,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] == prompt
    assert reply.json()["message"]["content"].strip() == answer.strip()
