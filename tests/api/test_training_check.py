"""The automatic before/after check of a training run, through the API with tiny-random-gemma3:
a real run queues it (an `evaluate` job marked automatic: the fine-tune against its base on a
handful of test examples, greedy, with the suite that fits the data), and a normal evaluation
of the same examples gives the same numbers and the same answers."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tuneforge.db.session import transaction
from tuneforge.db.tables import User
from tuneforge.errors import NotFound
from tuneforge.evaluation.comparison import delta_text, verdict
from tuneforge.services.model_check import ModelCheck, model_check, run_checks

TINY = "tiny-random-gemma3"
PLACES = ["harbour", "mill", "tower", "market", "bridge", "garden"]


def fact_dataset(client, headers, *, test_size: int = 8, rows: int = 32) -> dict:
    """One fact asked many ways ("Where is the key?" -> "Vellora."), `test_size` rows held out
    as the test split (0: none)."""
    lines = [
        {"question": f"Where is the key of the {PLACES[i % 6]} ({i})?", "answer": "Vellora."}
        for i in range(rows)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": ("fact.jsonl", io.BytesIO(body))}, headers=headers
    ).json()
    split = {"test_size": test_size, "seed": 1} if test_size else {"mode": "none"}
    config = {"mapping": raw["mapping"], "split": split}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return processed.json()


def train(client, headers, dataset_id: str, **values: object) -> dict:
    spec = {
        "base_model": TINY,
        "dataset_id": dataset_id,
        "max_steps": 30,
        "batch_size": 4,
        "learning_rate": 5e-3,
        "eval_every": 0,
        **values,
    }
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=headers)
    assert job.status_code == 201, job.text
    return wait_status(client, job.json()["id"], headers, "succeeded", timeout=400)


def answers(client, headers, job_id: str) -> list[tuple[int, dict]]:
    page = client.get(f"/api/v1/evaluations/{job_id}/samples?limit=500", headers=headers).json()
    return [(row["index"], row["answers"]) for row in page["items"]]


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice")), bearer(add_user(settings, "bob"))


@pytest.mark.trains
@pytest.mark.timeout(900)
def test_a_finished_run_checks_itself_and_a_full_evaluation_agrees(api) -> None:
    client, alice, bob = api
    dataset = fact_dataset(client, alice, test_size=16, rows=40)  # more than the check's 12
    run = train(client, alice, dataset["id"])
    model_id, check_id = run["result"]["model_id"], run["result"]["check_job_id"]
    assert check_id, "a run whose dataset has a test split queues its check"
    check = client.get(f"/api/v1/jobs/{check_id}", headers=alice).json()
    assert check["kind"] == "evaluate"
    spec = check["spec"]
    assert spec["automatic"] is True
    assert (spec["model"], spec["compare_with"]) == (model_id, TINY)
    assert (spec["split"], spec["suite"], spec["max_samples"]) == ("test", "extraction", 12)
    assert spec["temperature"] == 0.0
    assert client.get(f"/api/v1/jobs/{check_id}", headers=bob).status_code == 404
    wait_status(client, check_id, alice, "succeeded", timeout=300)
    checked = client.get(f"/api/v1/evaluations/{check_id}", headers=alice).json()
    assert checked["automatic"] is True and checked["count"] == 12
    assert checked["comparison"]["label"] == "fine-tune vs base"
    assert [m["base"] for m in checked["models"]] == [TINY, None]

    # A normal evaluation of the same 12 examples (the same seeded draw) agrees to the digit.
    full = client.post(
        "/api/v1/jobs",
        json={
            "kind": "evaluate",
            "spec": {
                "model": TINY,
                "compare_with": model_id,  # the other way round: the reading must not care
                "dataset_id": dataset["id"],
                "suite": "extraction",
                "max_samples": 12,
                "max_new_tokens": spec["max_new_tokens"],
            },
        },
        headers=alice,
    ).json()
    wait_status(client, full["id"], alice, "succeeded", timeout=300)
    result = client.get(f"/api/v1/evaluations/{full['id']}", headers=alice).json()
    assert result["automatic"] is False and result["count"] == checked["count"]
    assert result["metrics"] == checked["metrics"][::-1]
    assert result["right"] == checked["right"][::-1]
    assert result["comparison"]["label"] == "fine-tune vs base"
    assert result["comparison"]["values"] == checked["comparison"]["values"]
    tuned = checked["metrics"][0]["exact_match"] - checked["metrics"][1]["exact_match"]
    assert checked["comparison"]["values"]["exact_match"] == pytest.approx(tuned)
    swapped = [(i, {"A": a["B"], "B": a["A"]}) for i, a in answers(client, alice, full["id"])]
    assert swapped == answers(client, alice, check_id)
    # The model page and the compare page say the same, in words.
    shown = model_check_as(client, "alice", model_id)
    assert (shown.state, shown.summary) == ("succeeded", verdict(checked))
    assert shown.summary is not None and shown.summary.endswith("/12.")
    with transaction(client.app.state.sessions) as session:
        user = session.scalars(select(User).where(User.username == "alice")).one()
        found = run_checks(session, user, [run["result"], None])
    gain = delta_text("exact_match", checked["comparison"]["values"]["exact_match"])
    assert found == [f"{verdict(checked)} (Exact match: fine-tune vs base: {gain})", "none"]
    with transaction(client.app.state.sessions) as session:
        user = session.scalars(select(User).where(User.username == "bob")).one()
        assert run_checks(session, user, [run["result"]]) == ["none"]  # not his model


def model_check_as(client, username: str, model_id: str) -> ModelCheck:
    with transaction(client.app.state.sessions) as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        return model_check(session, user, model_id)


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_no_check_without_a_test_split_or_when_turned_off(api) -> None:
    client, alice, _ = api
    no_test = fact_dataset(client, alice, test_size=0, rows=12)
    run = train(client, alice, no_test["id"], max_steps=2)
    assert run["result"]["check_job_id"] is None
    held_out = fact_dataset(client, alice, rows=12, test_size=4)
    off = train(client, alice, held_out["id"], max_steps=2, check_examples=0)
    assert off["result"]["check_job_id"] is None
    jobs = client.get("/api/v1/jobs?kind=evaluate", headers=alice).json()
    assert jobs["total"] == 0
    # The model page says why there is none.
    assert model_check_as(client, "alice", run["result"]["model_id"]).state == "no_test"
    assert model_check_as(client, "alice", off["result"]["model_id"]).state == "off"
    with transaction(client.app.state.sessions) as session:
        user = session.scalars(select(User).where(User.username == "alice")).one()
        found = run_checks(session, user, [run["result"], off["result"]])
    assert found == ["no test split", "turned off"]
    with pytest.raises(NotFound):
        model_check_as(client, "bob", off["result"]["model_id"])
