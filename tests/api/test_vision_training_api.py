"""Does it see? The tiny random Gemma 3 vision model and the tiny Gemma 4 (each through its own
image path: Gemma 4 reads each image as its own soft tokens, patches and positions), trained
through the API with its preset on generated images (a coloured square on a noisy background at
a random size and place; the answer to "What colour is the square?" is the colour), name the
colour of held-out images where the untrained model cannot; the same fine-tune asked without
the image does no better than chance, so the pixels are what it learned from. Also: a dataset
with images is refused at launch for a text-only model, naming both."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tests.images import COLOURS, coloured_images, image_zip
from tuneforge.models.catalog import catalog
from tuneforge.storage import ArtifactStore

pytestmark = pytest.mark.trains

MODEL = "tiny-random-gemma3-vision"
QUESTION = "What colour is the square?"
TRAIN_IMAGES = 96
HELD_OUT = 40  # ten of each colour, none of them seen in training
CHANCE = 1 / len(COLOURS)


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice"))


def image_dataset(client, headers: dict[str, str], rows: list[tuple[bytes, str]]) -> dict:
    """The rows as a ZIP of images with a metadata.jsonl, uploaded and processed."""
    archive = image_zip(rows, question=QUESTION)
    raw = client.post(
        "/api/v1/datasets", files={"file": ("squares.zip", io.BytesIO(archive))}, headers=headers
    )
    assert raw.status_code == 201, raw.text
    config = {"mapping": raw.json()["mapping"], "split": {"test_size": 0.1, "seed": 1}}
    processed = client.post(
        f"/api/v1/datasets/{raw.json()['id']}/process", json=config, headers=headers
    )
    assert processed.status_code == 201, processed.text
    dataset = processed.json()
    deadline = time.monotonic() + 120
    while dataset["status"] == "processing":
        assert time.monotonic() < deadline, "the dataset is still being processed"
        time.sleep(0.5)
        dataset = client.get(f"/api/v1/datasets/{dataset['id']}", headers=headers).json()
    assert dataset["status"] == "ready", dataset
    return dataset


def accuracy(model: Any, directory: Path, rows: list[tuple[bytes, str]], images: bool) -> float:
    """The share of `rows` whose colour the model names, greedily, shown the image or not. The
    prompts are encoded as training encodes them; being all the same length (square images: the
    same soft tokens, Gemma 4's too), they are answered in one batch (the pixels, and Gemma 4's
    patch positions, through the model's own image processor)."""
    from tokenizers import Tokenizer

    from tuneforge.models.vision import vision_info
    from tuneforge.models.vision_inputs import pixel_inputs, token_type_inputs
    from tuneforge.training.components.tokenize import encode_prompt

    info = vision_info(directory)
    assert info is not None
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


@pytest.mark.timeout(1000)
@pytest.mark.parametrize("model_id", [MODEL, "tiny-random-gemma4"])
def test_it_sees_the_colour_of_held_out_images(api, settings, model_id: str) -> None:
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm, model_dir

    client, alice = api
    started = time.monotonic()
    dataset = image_dataset(client, alice, coloured_images(TRAIN_IMAGES, seed=1))
    processed = time.monotonic()
    preset = client.get(f"/api/v1/trainings/presets/{model_id}_lora", headers=alice)
    assert preset.status_code == 200, preset.text
    # fp32 whatever the CPU: with bf16 (picked by `auto` on CPUs with AMX) the tiny Gemma 4 named
    # 50% of the held-out colours after this run, against 100% in fp32.
    spec = {**preset.json(), "dataset_id": dataset["id"], "check_examples": 0, "precision": "fp32"}
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert job.status_code == 201, job.text
    # A few minutes on an idle 2-core CPU; the bound leaves room for a machine busy with others.
    done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=840)
    trained = time.monotonic()
    # The run page's samples: held-out images, with their thumbnails.
    metrics = client.get(f"/api/v1/jobs/{job.json()['id']}/metrics", headers=alice).json()
    last = metrics["samples"][-1]["items"]
    assert last and all(item["images"][0].startswith("data:image/jpeg") for item in last)
    assert all(item["prompt"] == QUESTION for item in last)

    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=alice).json()
    local = Path(settings.data_dir) / "seen"
    ArtifactStore(settings.resolved_storage_url).get_dir(model["artifact_key"], local)
    entry = catalog().get(model_id)
    assert entry is not None
    directory = model_dir(entry, settings.models_dir)
    held_out = coloured_images(HELD_OUT, seed=2)
    base = load_causal_lm(directory, torch.float32)
    untrained = accuracy(base, directory, held_out, images=True)
    tuned = PeftModel.from_pretrained(load_causal_lm(directory, torch.float32), local)
    seeing = accuracy(tuned, directory, held_out, images=True)
    blind = accuracy(tuned, directory, held_out, images=False)
    print(
        f"\ndoes {model_id} see: untrained {untrained:.0%}, fine-tuned {seeing:.0%} with the "
        f"image and {blind:.0%} without it (chance {CHANCE:.0%}); the dataset took "
        f"{processed - started:.0f} s, the run {trained - processed:.0f} s "
        f"({done['result']['steps']} steps), measuring {time.monotonic() - trained:.0f} s"
    )
    assert untrained <= CHANCE + 0.1
    assert seeing >= 0.9
    assert blind <= CHANCE  # one prompt without pixels: one answer, at best one colour in four


def test_images_are_refused_for_a_text_only_model(api) -> None:
    client, alice = api
    dataset = image_dataset(client, alice, coloured_images(8, seed=3))
    spec = {"base_model": "tiny-random-gemma3", "dataset_id": dataset["id"], "max_steps": 1}
    refused = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert dataset["name"] in message and "tiny-random-gemma3" in message
    assert "text-only" in message
