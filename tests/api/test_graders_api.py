"""Trying reward graders before a run, through the API: each grade with its reason and the total,
a judge grader graded by the loopback judge server with the user's own key, the endpoint policy
and unset secrets refused, a failing judge reported beside the other grades, bad graders
refused with the field named; and the library of grader types."""

from __future__ import annotations

from tests.conftest import add_user, bearer
from tests.evaluation.judge_server import judge_server

KEY = "sk-judge-0123456789-secret"
LOOPBACK = ["127.0.0.1"]  # where the fake judge listens: trusted for every user
TRY = "/api/v1/trainings/graders/try"

GRADERS = [
    {"type": "numeric_match", "column": "answer", "extract": "tag", "tag": "answer", "weight": 2},
    {
        "type": "regex",
        "name": "format",
        "pattern": r"(?s)<think>.+</think>\s*<answer>.+</answer>",
        "mode": "fullmatch",
    },
    {"type": "length", "maximum": 4, "weight": 0.5},
]


def judge(url: str, **extra: object) -> dict:
    return {
        "type": "judge",
        "base_url": url,
        "model": "grader",
        "api_key_secret": "JUDGE_KEY",
        "rubric": "Only the number counts.",
        "column": "answer",
        **extra,
    }


def test_each_grade_says_why_and_the_total_is_the_weighted_sum(make_client, settings) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    body = {
        "graders": GRADERS,
        "completion": "<think>6 times 7 is 42</think> <answer>42</answer>",
        "row": {"answer": "42"},
    }
    tried = client.post(TRY, json=body, headers=alice)
    assert tried.status_code == 200, tried.text
    assert tried.json() == {
        "grades": [
            {
                "name": "numeric_match",
                "type": "numeric_match",
                "weight": 2.0,
                "score": 1.0,
                "reason": "found 42, reference 42: match",
            },
            {
                "name": "format",
                "type": "regex",
                "weight": 1.0,
                "score": 1.0,
                "reason": "the completion does match the pattern",
            },
            {
                "name": "length",
                "type": "length",
                "weight": 0.5,
                "score": 0.5,  # 6 words, two over the maximum of 4: 1 - 2/4
                "reason": "6 words, over the maximum 4: 0.50",
            },
        ],
        "total": 2.0 + 1.0 + 0.5 * 0.5,
        "max_total": 3.5,
    }
    wrong = client.post(TRY, json=body | {"row": {"answer": 41}}, headers=alice).json()
    assert wrong["grades"][0]["reason"] == "found 42, reference 41: no match"
    assert wrong["total"] == 1.25
    missing = client.post(TRY, json=body | {"row": {}}, headers=alice).json()
    assert missing["grades"][0] == {
        "name": "numeric_match",
        "type": "numeric_match",
        "weight": 2.0,
        "score": 0.0,
        "reason": "the row has no value in the column 'answer'",
    }
    assert client.post(TRY, json=body).status_code == 401


def test_bad_graders_are_refused_with_the_field_named(make_client, settings) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    cases = [
        ([{"type": "regex", "pattern": r"(\w+) \1"}], "RE2 cannot use this pattern"),
        ([{"type": "json_schema", "schema": {"type": "nothing"}}], "not a valid JSON Schema"),
        ([{"type": "length"}], "give `minimum`, `maximum` or both"),
        ([{"type": "json_valid"}, {"type": "json_valid"}], "two graders are named 'json_valid'"),
        ([{"type": "sentiment"}], "graders.0"),
        ([], "graders"),
    ]
    for graders, message in cases:
        refused = client.post(TRY, json={"graders": graders, "completion": "x"}, headers=alice)
        assert refused.status_code == 422, graders
        assert message in refused.text, refused.text
        assert refused.json()["error"]["details"]["problems"][0]["field"].startswith("body.graders")


def test_a_judge_grader_is_tried_with_the_users_key(make_client, settings) -> None:
    client = make_client(auth="local", trusted_endpoint_hosts=LOOPBACK)
    alice = bearer(add_user(settings, "alice"))
    with judge_server(KEY) as server:
        body = {
            "graders": [judge(server.url), GRADERS[2]],
            "completion": "It is 42",
            "row": {"prompt": "What is 6 times 7?", "answer": "42"},
        }
        unset = client.post(TRY, json=body, headers=alice)
        assert unset.status_code == 422
        assert "key secret JUDGE_KEY is not set" in unset.json()["error"]["message"]
        assert server.requests == []
        client.put("/api/v1/secrets/JUDGE_KEY", json={"value": KEY}, headers=alice)
        tried = client.post(TRY, json=body, headers=alice)
        assert tried.status_code == 200, tried.text
        grades = tried.json()["grades"]
        assert grades[0] == {
            "name": "judge",
            "type": "judge",
            "weight": 1.0,
            "score": 1.0,
            "reason": "the judge gave 10/10: has the reference",
        }
        assert tried.json()["total"] == 1.5  # the judge (1.0) and the length grader (0.5 x 1.0)
        (request,) = server.requests
        assert request["authorization"] == f"Bearer {KEY}"
        assert "Question:\nWhat is 6 times 7?" in request["messages"][1]["content"]
        assert "Only the number counts." in request["messages"][0]["content"]
        # A judge that fails says why in its grade; the other graders still grade.
        missing = client.post(
            TRY,
            json=body | {"graders": [judge(server.url, model="missing"), GRADERS[2]]},
            headers=alice,
        ).json()
        assert missing["grades"][0]["score"] is None
        assert "answered 404 for the model 'missing'" in missing["grades"][0]["reason"]
        assert missing["grades"][1]["score"] == 1.0 and missing["total"] == 0.5
        # A judge that is down is asked once, without a run's retries: someone is waiting.
        before = len(server.requests)
        down = client.post(
            TRY, json=body | {"graders": [judge(server.url, model="down")]}, headers=alice
        ).json()
        assert down["grades"][0]["score"] is None and down["total"] == 0.0
        assert "did not answer after 1 attempt (HTTP 503)" in down["grades"][0]["reason"]
        assert len(server.requests) - before == 1


def test_the_endpoint_policy_applies_to_a_tried_judge(make_client, settings) -> None:
    client = make_client(auth="local")  # loopback is not trusted for users here
    alice = bearer(add_user(settings, "alice"))
    client.put("/api/v1/secrets/JUDGE_KEY", json={"value": KEY}, headers=alice)
    body = {"graders": [judge("http://127.0.0.1:9/v1")], "completion": "42"}
    refused = client.post(TRY, json=body, headers=alice)
    assert refused.status_code == 422
    assert "A judge grader's base_url" in refused.json()["error"]["message"]


def test_the_library_lists_every_grader_type(make_client, settings) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    library = client.get("/api/v1/trainings/graders/library", headers=alice)
    assert library.status_code == 200
    entries = library.json()
    assert [e["type"] for e in entries] == [
        "exact_match",
        "numeric_match",
        "regex",
        "json_valid",
        "json_schema",
        "length",
        "phrases",
        "judge",
    ]
    for entry in entries:
        assert entry["title"] and entry["explanation"] and entry["schema"]["properties"]
        tried = client.post(
            TRY, json={"graders": [entry["example"]], "completion": "{}"}, headers=alice
        )
        # Every example is a valid grader (the judge's needs its key secret first).
        expected = 422 if entry["type"] == "judge" else 200
        assert tried.status_code == expected, tried.text
