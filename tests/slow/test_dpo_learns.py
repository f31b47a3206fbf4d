"""Does DPO teach the real Gemma 3 270M a preference? A style its base is indifferent to, through
the API.

The task: answers to "how do I get going with <a hobby>" questions come in pairs with the same
advice, the chosen one opening with "Sure!", the rejected one with "Okay." The base
(pre-trained) model has no steady preference between the two openings (it found the chosen
answer likelier in 8 of 24 such pairs; the test measures it again on its held-out pairs), so the
pairs teach a preference it does not have. Openings were picked over endings: sign-offs such as
"Cheers!" against "Good luck!" are ones the base ranks the same way almost every time (1 of 24),
and an opening shows in the first tokens of a greedy answer, so checking it costs 4 tokens.

DPO with the recipe's defaults (but for the epochs, set so the run fits the time budget) must
make the fine-tune prefer the chosen answer of held-out pairs (hobbies never trained on) at
least 80% of the time, measured by the preference evaluation suite against the base, and make
its greedy answers open the preferred way, more often than the base's do.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.conftest import add_user, bearer
from tests.evaluation.test_suites_api import finished, samples, upload

BASE = "gemma-3-270m"
CHOSEN, REJECTED = "Sure!", "Okay."
HOBBIES = """
baking bread, learning the guitar, running a marathon, growing tomatoes, painting with
watercolours, keeping bees, writing poetry, learning Spanish, fixing a bicycle, brewing coffee,
knitting a scarf, training a puppy, camping in the rain, saving money, playing chess, swimming
laps, making pasta, drawing portraits, studying for exams, building a birdhouse, planting roses,
cooking rice, hiking in winter, learning to juggle, taking photos at night, reading more books,
sleeping better, cleaning a kitchen, packing for a trip, making friends in a new city, learning
to type faster, baking cookies, riding a horse, sewing a button, learning to dance, climbing
indoors, fishing in a lake, writing a diary, keeping a plant alive, playing the piano, learning
to skate, making candles, carving wood, cooking soup, drawing comics, building a kite, sailing a
small boat, folding paper cranes, playing tennis, baking a cake, learning to swim, growing
herbs, fixing a leaky tap, painting a fence, running in the heat, learning to cycle, making
pizza, writing letters, learning to whistle, bird watching, making jam, learning Japanese,
playing the drums, ironing shirts, decorating a room, starting a podcast, practising yoga,
brewing tea, playing darts, building a snowman, learning to sing, making soap, rowing a boat,
planting a hedge, learning chess openings, cooking for friends, making a photo album
"""
QUESTIONS = (
    "Any advice on {hobby}?",
    "How do I get better at {hobby}?",
    "What is one tip for {hobby}?",
    "I'm new to {hobby}. Where do I start?",
)
ADVICE = (
    "Start small with {hobby} and practise a little every day.",
    "The key to {hobby} is patience: take it one step at a time.",
    "Find a friend who enjoys {hobby} too, and keep each other going.",
    "Set a simple goal for {hobby} each week and note your progress.",
)
HELD_OUT = 20


def rows() -> list[dict[str, str]]:
    """One pair per hobby: a question, and the same advice opened the chosen and the rejected
    way."""
    rng = random.Random(3)
    hobbies = [h.strip() for h in " ".join(HOBBIES.split()).split(",")]
    pairs = []
    for hobby in hobbies:
        question = rng.choice(QUESTIONS).format(hobby=hobby)
        advice = rng.choice(ADVICE).format(hobby=hobby)
        pairs.append(
            {"prompt": question, "chosen": f"{CHOSEN} {advice}", "rejected": f"{REJECTED} {advice}"}
        )
    return pairs


def evaluation(client, headers, **spec: object) -> dict:
    """An evaluation of the fine-tune (A) against its base (B) on the held-out pairs."""
    job = client.post("/api/v1/jobs", json={"kind": "evaluate", "spec": spec}, headers=headers)
    assert job.status_code == 201, job.text
    return finished(client, headers, job.json()["id"], timeout=600)


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.timeout(900)
def test_dpo_teaches_gemma_270m_a_preference_its_base_does_not_have(
    make_client, settings, gemma_270m
):
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    dataset = upload(client, alice, "openings.jsonl", rows(), test_size=HELD_OUT)
    assert dataset["mapping"]["mode"] == "preference"
    assert dataset["splits"]["test"] == HELD_OUT

    started = time.monotonic()
    spec = {
        "trainer": "dpo",
        "base_model": BASE,
        "dataset_id": dataset["id"],
        "epochs": 2,  # the recipe's defaults but for this: the run must fit the test's budget
        "eval_every": 0,
        "sample_answers": False,  # the test reads none
        "check_examples": 0,  # the test evaluates the model itself
    }
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=alice)
    assert job.status_code == 201, job.text
    trained = finished(client, alice, job.json()["id"], timeout=600)
    training = time.monotonic() - started
    tuned = trained["result"]["model_id"]
    on_held_out = {"model": tuned, "compare_with": BASE, "dataset_id": dataset["id"]}

    scored = evaluation(client, alice, **on_held_out, suite="preference")["result"]
    assert scored["count"] == HELD_OUT
    after, before = (m["preference_accuracy"] for m in scored["metrics"])

    answered = evaluation(client, alice, **on_held_out, suite="vibe", max_new_tokens=4)
    answers = [row["answers"] for row in samples(client, alice, answered["id"])]
    opens = {
        label: sum(a[label].strip().startswith(CHOSEN) for a in answers) / len(answers)
        for label in "AB"
    }
    minutes = (time.monotonic() - started) / 60
    print(
        f"held-out preference accuracy: base {before:.0%} -> DPO {after:.0%}; greedy answers "
        f"opening with {CHOSEN!r}: base {opens['B']:.0%} -> DPO {opens['A']:.0%}; training "
        f"{training / 60:.1f} min, {minutes:.1f} min in all"
    )
    assert 0.25 <= before <= 0.75, f"the base already has the preference ({before:.0%})"
    assert after >= 0.8
    assert opens["A"] > 0.5 and opens["A"] > opens["B"]
    assert minutes < 10  # the budget for a learning test; about 3 here
