"""Does GRPO teach the real Gemma 3 270M? A verifiable task, learnt from graders through the API.

The task: add two numbers and answer exactly `<answer>N</answer>` (a format regex that wants
the answer and nothing after it, and a numeric match of the number). A short SFT on 12 examples
shows the model the format: its greedy answers take it, but its sampled answers mostly run on
past the closing tag. GRPO then continues that adapter (`start_from`), sampling six answers to
each of two new prompts per step and learning from their rewards alone. A step's reward is
measured before its update, on prompts the run has not trained on yet, so the mean reward of
the first steps is the SFT model's and that of the last steps GRPO's: it must rise by a clear
margin.
"""

from __future__ import annotations

import io
import json
import random
import statistics
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
HELD_OUT = 40
MARGIN = 0.25  # of a reward whose maximum is 2 (both graders' weights)
SFT_STEPS, GRPO_STEPS = 16, 16
WINDOW = 4  # steps averaged at each end


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
@pytest.mark.learning
@pytest.mark.timeout(1200)
def test_grpo_raises_the_held_out_reward_of_gemma_270m(make_client, settings, gemma_270m) -> None:
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    train_pairs, held_out = sums()
    started = time.monotonic()
    # A few examples of the format, with their sums, for the SFT that GRPO starts from: enough
    # that greedy answers take the format, too few for sampled answers to end cleanly often.
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
            "max_steps": SFT_STEPS,
            "batch_size": 4,
            "learning_rate": 5e-4,
            "warmup_ratio": 0,
            "sample_answers": False,  # the test reads none
            "check_examples": 0,
        },
    )
    start_model = sft["result"]["model_id"]
    # Prompts only: GRPO never sees an answer to imitate, only the graders' rewards; its test
    # split (sums it never trains on) is what both models are measured on.
    pairs = train_pairs[16 : 16 + 3 * HELD_OUT] + held_out
    prompts = [{"prompt": question(a, b), "answer": str(a + b)} for a, b in pairs]
    grpo_data = upload(client, alice, "sums.jsonl", prompts, test_size=HELD_OUT)
    done = train(
        client,
        alice,
        {
            "trainer": "grpo",
            "base_model": "gemma-3-270m",
            "dataset_id": grpo_data,
            "start_from": start_model,
            "graders": GRADERS,
            "max_steps": GRPO_STEPS,
            "num_generations": 6,
            "max_completion_length": 12,
            "learning_rate": 1e-4,
            "eval_every": 0,
            "sample_answers": False,  # the test reads none
            "check_examples": 0,
        },
    )
    series = client.get(f"/api/v1/jobs/{done['id']}/metrics", headers=alice).json()["series"]
    rewards = [value for _, value in series["reward"]]
    # Each step's reward is that of completions sampled, before the step's update, for prompts
    # the run has not trained on yet (the steps take new prompts: fewer than an epoch), so the
    # first steps measure the SFT model it started from and the last ones what GRPO made of it.
    assert len(rewards) == GRPO_STEPS and len(pairs) - HELD_OUT > GRPO_STEPS * 2
    before, after = statistics.fmean(rewards[:WINDOW]), statistics.fmean(rewards[-WINDOW:])
    minutes = (time.monotonic() - started) / 60
    print(
        f"mean reward of sampled completions to unseen prompts: first {WINDOW} steps "
        f"{before:.2f} -> last {WINDOW} steps {after:.2f}; by step {[round(r, 2) for r in rewards]}"
        f"; {minutes:.1f} min"
    )
    assert after >= before + MARGIN
    assert minutes < 10
