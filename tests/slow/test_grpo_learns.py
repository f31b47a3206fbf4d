"""Does GRPO teach the real Gemma 3 270M? A verifiable task, learnt from graders through the API.

The task: add two numbers and answer exactly `<answer>N</answer>`. A short SFT on a few examples
shows the model the format; GRPO then continues that adapter (`start_from`), sampling answers
to training prompts and rewarding the format (a regex) and the number (numeric match on the
`answer` column). Its own evaluations answer held-out prompts (sums it never trained on)
greedily, at step 0 (the SFT model it starts from) and at the end: the mean reward must rise
by a clear margin.
"""

from __future__ import annotations

import io
import json
import random
import time

import pytest

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer

GRADERS = [
    {"type": "regex", "name": "format", "pattern": r"<answer>\d+</answer>", "mode": "fullmatch"},
    {
        "type": "numeric_match",
        "name": "number",
        "column": "answer",
        "extract": "tag",
        "tag": "answer",
    },
]
HELD_OUT = 12
MARGIN = 0.25  # of a reward whose maximum is 2 (both graders' weights)


def question(a: int, b: int) -> str:
    return f"What is {a} plus {b}? Reply as <answer>N</answer>."


def sums() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    pairs = [(a, b) for a in range(1, 20) for b in range(1, 20)]
    random.Random(0).shuffle(pairs)
    return pairs[HELD_OUT:], pairs[:HELD_OUT]


def upload(client, headers, name: str, lines: list[dict], test_size: float | None) -> str:
    body = "\n".join(json.dumps(line) for line in lines).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": (name, io.BytesIO(body))}, headers=headers
    ).json()
    config: dict[str, object] = {"mapping": raw["mapping"]}
    if test_size is not None:
        config["split"] = {"test_size": test_size, "seed": 1}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return str(processed.json()["id"])


def train(client, headers, spec: dict) -> dict:
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=headers)
    assert job.status_code == 201, job.text
    return wait_status(client, job.json()["id"], headers, "succeeded", timeout=900)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_grpo_raises_the_held_out_reward_of_gemma_270m(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    train_pairs, held_out = sums()
    started = time.monotonic()
    # A few examples of the format, with their sums, for the SFT that GRPO starts from.
    shown = [
        {"question": question(a, b), "answer": f"<answer>{a + b}</answer>"}
        for a, b in train_pairs[:12]
    ]
    sft_data = upload(client, alice, "format.jsonl", shown, test_size=None)
    sft = train(
        client,
        alice,
        {
            "base_model": "gemma-3-270m",
            "dataset_id": sft_data,
            "max_steps": 4,
            "batch_size": 4,
            "learning_rate": 5e-4,
            "warmup_ratio": 0,
            "check_examples": 0,
        },
    )
    # Prompts only: GRPO never sees an answer to imitate, only the graders' rewards; its test
    # split (the held-out sums) is never trained on.
    pairs = train_pairs[16 : 16 + 4 * HELD_OUT] + held_out
    prompts = [{"prompt": question(a, b), "answer": str(a + b)} for a, b in pairs]
    grpo_data = upload(client, alice, "sums.jsonl", prompts, test_size=0.2)
    steps = 8
    done = train(
        client,
        alice,
        {
            "trainer": "grpo",
            "base_model": "gemma-3-270m",
            "dataset_id": grpo_data,
            "start_from": sft["result"]["model_id"],
            "graders": GRADERS,
            "max_steps": steps,
            "batch_size": 2,
            "num_generations": 4,
            "max_completion_length": 10,
            "learning_rate": 3e-4,
            "eval_every": steps,
            "eval_max_examples": HELD_OUT,
            "check_examples": 0,
        },
    )
    minutes = (time.monotonic() - started) / 60
    series = client.get(f"/api/v1/jobs/{done['id']}/metrics", headers=alice).json()["series"]
    before, after = (value for _, value in series["eval_reward"])
    parts = {
        name: [round(v, 2) for _, v in series[f"eval_reward/{name}"]]
        for name in ("format", "number")
    }
    print(f"held-out mean reward {before:.2f} -> {after:.2f} {parts} in {minutes:.1f} min")
    assert after >= before + MARGIN
    assert minutes < 6
