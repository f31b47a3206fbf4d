"""Does the tiny Gemma 4 see? Trained through the API with its preset on generated images (a
coloured square on a noisy background; "What colour is the square?"), it names the colour of
held-out images where the untrained model cannot, and the same fine-tune asked without the image
does no better than chance: the pixels, through Gemma 4's own image path, are what it learned
from."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.api.test_jobs_api import wait_status
from tests.api.test_vision_training_api import (
    CHANCE,
    HELD_OUT,
    QUESTION,
    TRAIN_IMAGES,
    image_dataset,
)
from tests.images import coloured_images
from tuneforge.models.catalog import catalog
from tuneforge.storage import ArtifactStore

pytestmark = pytest.mark.trains

MODEL = "tiny-random-gemma4"


@pytest.fixture
def api(make_client, settings):
    from tests.conftest import add_user, bearer

    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice"))


def accuracy(model: Any, directory: Path, rows: list[tuple[bytes, str]], images: bool) -> float:
    """The share of `rows` whose colour the model names, greedily, shown the image or not; the
    prompts encoded as training encodes them (square images: each the same 64 soft tokens, so
    the prompts are answered in one batch)."""
    from tokenizers import Tokenizer

    from tuneforge.models.vision import vision_info
    from tuneforge.models.vision_inputs import pixel_inputs, token_type_inputs
    from tuneforge.training.components.tokenize import encode_prompt

    info = vision_info(directory)
    assert info is not None and info.variable
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    parts = [{"type": "image"}] if images else []
    prompt = [{"role": "user", "content": [*parts, {"type": "text", "text": QUESTION}]}]
    ids = [encode_prompt(prompt, tokenizer, info, [data] if images else []) for data, _ in rows]
    assert len({len(i) for i in ids}) == 1
    batch = torch.tensor(ids)
    extra: dict[str, Any] = {}
    if images:
        extra = pixel_inputs([data for data, _ in rows], directory)
        extra |= token_type_inputs(batch, info)
    with torch.no_grad():
        output = model.generate(
            input_ids=batch,
            attention_mask=torch.ones_like(batch),
            max_new_tokens=4,
            do_sample=False,
            eos_token_id=[1, 106],
            pad_token_id=0,
            **extra,
        )
    answers = [
        tokenizer.decode(row[batch.shape[1] :].tolist(), skip_special_tokens=True).strip()
        for row in output
    ]
    right = sum(a.lower() == c for a, (_, c) in zip(answers, rows, strict=True))
    return right / len(rows)


@pytest.mark.timeout(1200)
def test_the_tiny_gemma_4_sees_the_colour_of_held_out_images(api, settings) -> None:
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm, model_dir

    client, alice = api
    started = time.monotonic()
    dataset = image_dataset(client, alice, coloured_images(TRAIN_IMAGES, seed=1))
    processed = time.monotonic()
    preset = client.get(f"/api/v1/trainings/presets/{MODEL}_lora", headers=alice)
    assert preset.status_code == 200, preset.text
    spec = {**preset.json(), "dataset_id": dataset["id"], "check_examples": 0}
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert job.status_code == 201, job.text
    done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=1000)
    trained = time.monotonic()
    metrics = client.get(f"/api/v1/jobs/{job.json()['id']}/metrics", headers=alice).json()
    last = metrics["samples"][-1]["items"]
    assert last and all(item["images"][0].startswith("data:image/jpeg") for item in last)

    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=alice).json()
    local = Path(settings.data_dir) / "seen"
    ArtifactStore(settings.resolved_storage_url).get_dir(model["artifact_key"], local)
    entry = catalog().get(MODEL)
    assert entry is not None
    directory = model_dir(entry, settings.models_dir)
    held_out = coloured_images(HELD_OUT, seed=2)
    untrained = accuracy(load_causal_lm(directory, torch.float32), directory, held_out, True)
    tuned = PeftModel.from_pretrained(load_causal_lm(directory, torch.float32), local)
    seeing = accuracy(tuned, directory, held_out, images=True)
    blind = accuracy(tuned, directory, held_out, images=False)
    print(
        f"\ndoes the tiny Gemma 4 see: untrained {untrained:.0%}, fine-tuned {seeing:.0%} with "
        f"the image and {blind:.0%} without it (chance {CHANCE:.0%}); the dataset took "
        f"{processed - started:.0f} s, the run {trained - processed:.0f} s "
        f"({done['result']['steps']} steps), measuring {time.monotonic() - trained:.0f} s"
    )
    assert untrained <= CHANCE + 0.1
    assert seeing >= 0.9
    assert blind <= CHANCE
