"""LLM-as-judge: reading the judge's verdicts, grading through a real OpenAI-shaped HTTP server
on loopback (`judge_server`) with its retries and refusals, the checks at launch, and an
evaluation of tiny-random-gemma3 graded by the judge with the key from the user's secrets."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.api.test_evaluations_api import TINY, evaluate, reviews
from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tests.evaluation.judge_server import judge_server
from tests.server import free_port
from tuneforge.evaluation.judge import Judge, JudgeFailed, JudgeSpec, judge_rows, parse_verdict
from tuneforge.evaluation.spec import EvaluationSpec

KEY = "sk-judge-0123456789-secret"
NO_WAIT = (0.0, 0.0, 0.0)
LOOPBACK = ["127.0.0.1"]  # where the fake judges listen: trusted for every user


@pytest.mark.parametrize(
    ("reply", "score", "reason"),
    [
        ('{"score": 7, "reason": "close"}', 7, "close"),
        ('```json\n{"score": 10, "reason": "right"}\n```', 10, "right"),
        ('Sure! {"score": 1, "reason": "wrong"} Hope that helps.', 1, "wrong"),
        ('{"score": "4"}', 4, ""),
        ('{"score": 9.0, "reason": "fine"}', 9, "fine"),
        ("Score: 8\nReason: mostly right", 8, ""),
        ('{"score": 6, "reason": "unquoted "quote"}', 6, ""),  # broken JSON, bare score
    ],
)
def test_verdicts_are_read_tolerantly(reply: str, score: int, reason: str) -> None:
    verdict = parse_verdict(reply)
    assert verdict is not None
    assert (verdict.score, verdict.reason) == (score, reason)


@pytest.mark.parametrize(
    "reply",
    ['{"score": 0}', '{"score": 11}', '{"score": 7.5}', '{"grade": 7}', "Lovely!", "", "score: x"],
)
def test_replies_without_a_score_from_1_to_10_are_none(reply: str) -> None:
    assert parse_verdict(reply) is None


def test_scores_map_to_0_1_and_reasons_are_bounded() -> None:
    units = [parse_verdict(f'{{"score": {n}}}').unit for n in (1, 4, 10)]  # type: ignore[union-attr]
    assert units == pytest.approx([0.0, 1 / 3, 1.0])
    long = parse_verdict(json.dumps({"score": 5, "reason": "x" * 2000}))
    assert long is not None and len(long.reason) == 500


def test_the_spec_is_checked() -> None:
    spec = JudgeSpec(base_url="https://api.openai.com/v1/", model="gpt-4o-mini")
    assert spec.base_url == "https://api.openai.com/v1"
    for bad in ({"base_url": "ftp://host/v1"}, {"base_url": "api.openai.com/v1"}):
        with pytest.raises(ValidationError, match="http"):
            JudgeSpec(model="m", **bad)
    with pytest.raises(ValidationError, match="api_key_secret"):
        JudgeSpec(base_url="http://h/v1", model="m", api_key_secret="sk-the-key-itself")
    base = {"model": TINY, "dataset_id": "d", "judge": {"base_url": "http://h/v1", "model": "m"}}
    assert EvaluationSpec(**base, suite="vibe").judge is not None
    with pytest.raises(ValidationError, match="perplexity"):
        EvaluationSpec(**base, suite="perplexity")


def _rows() -> list[dict]:
    return [
        {
            "prompt": "Capital of France?",
            "messages": [{"role": "user", "text": "Capital of France?"}],
            "reference": "Paris",
            "answers": {"A": "It is Paris.", "B": "Lyon"},
            "scores": {"A": {"correct": True}, "B": {"correct": False}},
        },
        {
            "prompt": "And of Italy?",
            "messages": [
                {"role": "user", "text": "Capital of France?"},
                {"role": "assistant", "text": "Paris"},
                {"role": "user", "text": "And of Italy?"},
            ],
            "reference": "Rome",
            "answers": {"A": "Milan", "B": "rome"},
            "scores": {},
        },
    ]


def test_grading_through_an_openai_compatible_server() -> None:
    with judge_server(KEY) as server:
        spec = JudgeSpec(base_url=server.url, model="grader", rubric="Be strict about cities.")
        judge = Judge(spec, KEY, delays=NO_WAIT)
        rows = _rows()
        calls: list[tuple[int, int]] = []
        try:
            means = judge_rows(
                judge, rows, ["A", "B"], lambda total, done: calls.append((total, done))
            )
        finally:
            judge.close()
    assert means == {"A": 0.5, "B": 0.5}
    assert [row["scores"]["A"]["judge_score"] for row in rows] == [1.0, 0.0]
    assert [row["scores"]["B"]["judge_score"] for row in rows] == [0.0, 1.0]
    assert rows[0]["scores"]["A"] == {
        "correct": True,
        "judge_score": 1.0,
        "judge_reason": "has the reference",
    }
    assert calls == [(4, 0), (4, 1), (4, 2), (4, 3), (4, 4)]
    # Every request: the key as a bearer token, the model, temperature 0, the rubric, the
    # whole conversation for a multi-turn sample.
    assert len(server.requests) == 4
    assert {r["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert {(r["model"], r["temperature"]) for r in server.requests} == {("grader", 0)}
    assert all("Be strict about cities." in r["messages"][0]["content"] for r in server.requests)
    assert "[assistant] Paris" in server.requests[2]["messages"][1]["content"]


def test_fences_retries_and_refusals() -> None:
    with judge_server(KEY) as server:

        def grade(model: str, key: str | None = KEY, delays=NO_WAIT):
            judge = Judge(JudgeSpec(base_url=server.url, model=model), key, delays=delays)
            try:
                return judge.grade("Capital of France?", "Paris", "Paris")
            finally:
                judge.close()

        assert grade("fenced").score == 10  # type: ignore[union-attr]
        assert grade("chatty") is None
        before = len(server.requests)
        assert grade("flaky").score == 10  # type: ignore[union-attr]  # 503, then retried
        assert len(server.requests) - before == 2
        with pytest.raises(JudgeFailed, match=r"did not answer after 2 attempts \(HTTP 503\)"):
            grade("down", delays=(0.0,))
        with pytest.raises(JudgeFailed, match=r"refused the key \(HTTP 401\)"):
            grade("grader", key="sk-wrong")
        with pytest.raises(JudgeFailed, match="refused the key"):
            grade("grader", key=None)
        with pytest.raises(JudgeFailed, match="404 for the model 'missing'"):
            grade("missing")
        judge = Judge(JudgeSpec(base_url=server.url, model="chatty"), KEY, delays=NO_WAIT)
        rows = _rows()
        with pytest.raises(JudgeFailed, match="never with a score"):
            judge_rows(judge, rows, ["A", "B"], lambda total, done: None)
        assert rows == _rows()  # a failed judge leaves no partial grades behind
        judge.close()
    nobody = Judge(
        JudgeSpec(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m"), None, delays=(0.0, 0.0)
    )
    with pytest.raises(JudgeFailed, match=r"did not answer after 3 attempts \(ConnectError"):
        nobody.grade("q", "r", "a")
    nobody.close()


def test_launch_needs_the_key_secret_and_a_suite_with_answers(make_client, settings) -> None:
    client = make_client(auth="local", trusted_endpoint_hosts=LOOPBACK)
    alice = bearer(add_user(settings, "alice"))
    dataset = reviews(client, alice, rows=12)
    judge = {
        "base_url": "http://127.0.0.1:9/v1",
        "model": "grader",
        "api_key_secret": "JUDGE_API_KEY",
    }
    spec = {"model": TINY, "dataset_id": dataset["id"], "suite": "classification", "judge": judge}
    refused = evaluate(client, alice, **spec)
    assert refused.status_code == 422
    assert "JUDGE_API_KEY is not set" in refused.json()["error"]["message"]
    perplexity = evaluate(client, alice, **(spec | {"suite": "perplexity"}))
    assert perplexity.status_code == 422 and "perplexity" in perplexity.json()["error"]["message"]
    client.put("/api/v1/secrets/JUDGE_API_KEY", json={"value": KEY}, headers=alice)
    queued = evaluate(client, alice, **spec)
    assert queued.status_code == 201, queued.text
    assert KEY not in queued.text


def judged_evaluation(client, headers, dataset_id: str, url: str):
    """Launch a classification evaluation of 4 samples graded by the judge at `url`."""
    judge = {"base_url": url, "model": "grader", "api_key_secret": "JUDGE_API_KEY"}
    return evaluate(
        client,
        headers,
        model=TINY,
        dataset_id=dataset_id,
        suite="classification",
        max_samples=4,
        max_new_tokens=8,
        judge=judge,
    )


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_an_evaluation_graded_by_the_judge(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=LOOPBACK)
    alice = bearer(add_user(settings, "alice"))
    dataset = reviews(client, alice, rows=14)
    client.put("/api/v1/secrets/JUDGE_API_KEY", json={"value": KEY}, headers=alice)
    with judge_server(KEY) as server:
        job = judged_evaluation(client, alice, dataset["id"], server.url)
        assert job.status_code == 201, job.text
        done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=300)
    assert len(server.requests) == 4
    assert {r["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    result = client.get(f"/api/v1/evaluations/{done['id']}", headers=alice).json()
    download = client.get(f"/api/v1/evaluations/{done['id']}/samples.jsonl", headers=alice)
    rows = [json.loads(line) for line in download.text.splitlines()]
    assert len(rows) == 4
    # The judge's grades are the fake judge's rule applied to the stored answers.
    expected = [
        1.0 if row["reference"].lower() in row["answers"]["A"].lower() else 0.0 for row in rows
    ]
    assert [row["scores"]["A"]["judge_score"] for row in rows] == expected
    assert all(row["scores"]["A"]["judge_reason"] for row in rows)
    assert result["metrics"][0]["judge_score"] == pytest.approx(sum(expected) / 4)
    assert "accuracy" in result["metrics"][0]
    csv_file = client.get(f"/api/v1/evaluations/{done['id']}/samples.csv", headers=alice).text
    assert "judge_score_a" in csv_file.splitlines()[0]
    # The key is nowhere in what the job kept: spec, result, events, samples.
    events = client.get(
        f"/api/v1/jobs/{done['id']}/events", params={"follow": False}, headers=alice
    )
    assert "judging with grader: 4/4" in events.text
    for text in (json.dumps(done), events.text, download.text, csv_file):
        assert KEY not in text


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_a_failing_judge_keeps_the_answers_ungraded(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True, trusted_endpoint_hosts=LOOPBACK)
    alice = bearer(add_user(settings, "alice"))
    dataset = reviews(client, alice, rows=14)
    client.put("/api/v1/secrets/JUDGE_API_KEY", json={"value": "sk-wrong"}, headers=alice)
    with judge_server(KEY) as server:  # refuses the wrong key
        job = judged_evaluation(client, alice, dataset["id"], server.url)
        done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=300)
    result = client.get(f"/api/v1/evaluations/{done['id']}", headers=alice).json()
    assert result["judge_error"].startswith("The judge endpoint refused the key (HTTP 401)")
    assert "accuracy" in result["metrics"][0] and "judge_score" not in result["metrics"][0]
    download = client.get(f"/api/v1/evaluations/{done['id']}/samples.jsonl", headers=alice)
    rows = [json.loads(line) for line in download.text.splitlines()]
    assert len(rows) == 4 and all(row["answers"]["A"] is not None for row in rows)
    assert not any("judge_reason" in row["scores"]["A"] for row in rows)
