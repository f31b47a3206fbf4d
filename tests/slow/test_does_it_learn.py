"""Does fine-tuning teach the real Gemma 3 270M? A task it cannot do, learnt through the API.

The task: pull a person's name, age and city out of a sentence into a fixed JSON shape. The base
(pre-trained) model continues the text instead; after a few minutes of LoRA on this CPU it
answers held-out sentences (names, ages and cities it never saw in training) exactly.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
import time
from pathlib import Path

import pytest
import torch

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tuneforge.data.conversation import message
from tuneforge.storage import ArtifactStore

NAMES = [
    "Maria",
    "Ahmed",
    "Yuki",
    "Olga",
    "Pedro",
    "Ines",
    "Tomas",
    "Lena",
    "Kofi",
    "Priya",
    "Marek",
    "Sofia",
    "Jonas",
    "Amara",
    "Diego",
    "Hana",
    "Ivan",
    "Chloe",
    "Rafael",
    "Nadia",
    "Oskar",
    "Leila",
    "Bruno",
    "Anika",
    "Felix",
    "Zara",
    "Emil",
    "Noor",
    "Hugo",
    "Mina",
    "Carlos",
    "Elif",
    "Pavel",
    "Rosa",
    "Kenji",
    "Alma",
    "Viktor",
    "Dalia",
    "Omar",
    "Greta",
]
CITIES = [
    "Porto",
    "Lyon",
    "Osaka",
    "Tallinn",
    "Quito",
    "Seville",
    "Krakow",
    "Bergen",
    "Accra",
    "Pune",
    "Brno",
    "Genoa",
    "Malmo",
    "Lagos",
    "Cusco",
    "Sapporo",
    "Riga",
    "Nantes",
    "Recife",
    "Tunis",
    "Graz",
    "Aarhus",
    "Bilbao",
    "Cork",
    "Dakar",
    "Haifa",
    "Izmir",
    "Kazan",
    "Leeds",
    "Mombasa",
]
TEMPLATES = [
    "{name} is {age} years old and lives in {city}.",
    "Living in {city}, {name} turned {age} this year.",
    "At {age}, {name} moved to {city}.",
    "{name} ({age}) works in {city}.",
    "Our new colleague {name}, aged {age}, comes from {city}.",
]
INSTRUCTION = "Extract the person as JSON with keys name, age and city."
HELD_OUT = 20


def example(rng: random.Random, names: list[str], cities: list[str]) -> tuple[str, str]:
    name, city, age = rng.choice(names), rng.choice(cities), rng.randint(18, 90)
    sentence = rng.choice(TEMPLATES).format(name=name, age=age, city=city)
    answer = json.dumps({"name": name, "age": age, "city": city})
    return f"{INSTRUCTION}\n{sentence}", answer


def dataset() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    rng = random.Random(7)
    # Held-out prompts use names and cities that never appear in training.
    train = [example(rng, NAMES[:30], CITIES[:22]) for _ in range(240)]
    held_out = [example(rng, NAMES[30:], CITIES[22:]) for _ in range(HELD_OUT)]
    return train, held_out


def score(model, tokenizer, prompts: list[tuple[str, str]]) -> float:
    """The share of `prompts` answered with exactly the expected JSON, greedily, in one batch."""
    from tuneforge.training.components.generation import left_padded
    from tuneforge.training.components.tokenize import encode_prompt

    end = tokenizer.token_to_id("<end_of_turn>")
    encoded = [encode_prompt([message("user", prompt)], tokenizer) for prompt, _ in prompts]
    ids, mask = left_padded(encoded, "cpu")
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=32,
            do_sample=False,
            eos_token_id=[end, 1],
            pad_token_id=0,
        )
    right = 0
    for row, (_, answer) in zip(out[:, ids.shape[1] :].tolist(), prompts, strict=True):
        text = tokenizer.decode(row, skip_special_tokens=True)
        with contextlib.suppress(json.JSONDecodeError):
            right += json.loads(text.strip()) == json.loads(answer)
    return right / len(prompts)


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.timeout(1800)
def test_lora_teaches_gemma_270m_a_task_it_cannot_do(make_client, settings, gemma_270m) -> None:
    from peft import PeftModel
    from tokenizers import Tokenizer

    from tuneforge.models.loading import load_causal_lm

    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    train, held_out = dataset()
    lines = [{"question": q, "answer": a} for q, a in train]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": ("people.jsonl", io.BytesIO(body))}, headers=alice
    ).json()
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.1, "seed": 1}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=alice)
    assert processed.status_code == 201, processed.text

    tokenizer = Tokenizer.from_file(str(gemma_270m / "tokenizer.json"))
    base = load_causal_lm(gemma_270m, torch.float32)  # generates faster than bf16 on CPUs
    before = score(base, tokenizer, held_out)
    assert before < 0.2, f"the base model already does the task ({before:.0%})"

    spec = {
        "base_model": "gemma-3-270m",
        "dataset_id": processed.json()["id"],
        # One pass at a high LoRA rate (27 steps) keeps the run to a few minutes on 2 busy
        # cores; measured: every held-out sentence answered exactly, in PyTorch and llama.cpp.
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "eval_every": 0,
        "sample_max_new_tokens": 24,
        "check_examples": 0,  # the test scores the model itself
    }
    started = time.monotonic()
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert job.status_code == 201, job.text
    done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=1200)
    minutes = (time.monotonic() - started) / 60
    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=alice).json()
    local = Path(settings.data_dir) / "tuned"
    ArtifactStore(settings.resolved_storage_url).get_dir(model["artifact_key"], local)
    tuned = PeftModel.from_pretrained(base, local)
    after = score(tuned, tokenizer, held_out)
    print(f"held-out exact JSON: {before:.0%} -> {after:.0%} after {minutes:.1f} min of training")
    assert after >= 0.8
    assert minutes < 12
    exported_behaves_like_the_fine_tune(client, alice, model["id"], tokenizer, held_out)


def export(client, headers, model_id: str, **body: object) -> dict:
    created = client.post(f"/api/v1/models/{model_id}/exports", json=body, headers=headers)
    assert created.status_code == 201, created.text
    wait_status(client, created.json()["job_id"], headers, "succeeded", timeout=900)
    return client.get(f"/api/v1/exports/{created.json()['id']}", headers=headers).json()


def download(client, headers, export: dict, name: str, into: Path) -> Path:
    response = client.get(
        f"/api/v1/exports/{export['id']}/download", params={"file": name}, headers=headers
    )
    assert response.status_code == 200
    (into / name).write_bytes(response.content)
    return into / name


def exported_behaves_like_the_fine_tune(client, headers, model_id, tokenizer, held_out):
    """The q8_0 GGUF export answers the held-out sentences in llama.cpp as the fine-tune does
    (its merge step checks the merged logits against base + adapter on the way)."""
    from tuneforge.models.llamacpp import open_gguf
    from tuneforge.training.components.tokenize import encode_prompt

    folder = Path(tempfile.mkdtemp())
    gguf = export(client, headers, model_id, format="gguf", quantization="q8_0")
    print(f"q8_0 export: {gguf['verification']}")
    assert gguf["verification"]["merge"]["max_abs_logit_diff"] < 1e-3
    name = next(f["name"] for f in gguf["files"] if f["name"].endswith(".gguf"))
    llm = open_gguf(download(client, headers, gguf, name, folder), n_ctx=512)
    end = tokenizer.token_to_id("<end_of_turn>")
    right = 0
    for prompt, answer in held_out:
        ids = encode_prompt([message("user", prompt)], tokenizer)
        llm.reset()
        out: list[int] = []
        for token in llm.generate(ids, top_k=1, temp=0.0):
            if token in (end, 1) or len(out) == 32:
                break
            out.append(token)
        text = tokenizer.decode(out, skip_special_tokens=True)
        with contextlib.suppress(json.JSONDecodeError):
            right += json.loads(text.strip()) == json.loads(answer)
    print(f"held-out exact JSON in llama.cpp (q8_0 GGUF): {right / len(held_out):.0%}")
    assert right / len(held_out) >= 0.8
