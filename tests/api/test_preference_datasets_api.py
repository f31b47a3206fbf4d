"""Preference data through the API, the whole path: a ShareGPT preference upload is recognised with
no mapping, previews as a pair, processes into preference records with its broken rows reported,
and its statistics measure each side."""

from __future__ import annotations

import json

import pytest

from tests.conftest import add_user, bearer


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local")
    return client, bearer(add_user(settings, "alice"))


def _pair(i: int) -> dict[str, object]:
    return {
        "conversations": [{"from": "human", "value": f"What is {i} + {i}?"}],
        "chosen": {"from": "gpt", "value": f"{2 * i}."},
        "rejected": {"from": "gpt", "value": f"Maybe {2 * i + 1}, or more."},
    }


def test_a_sharegpt_preference_upload_processes_into_pairs(api) -> None:
    client, alice = api
    lines = [_pair(i) for i in range(40)]
    lines.append({**_pair(40), "rejected": {"from": "gpt", "value": " 80. "}})  # identical
    lines.append({"conversations": _pair(41)["conversations"], "chosen": _pair(41)["chosen"]})
    data = "\n".join(json.dumps(line) for line in lines).encode()
    response = client.post("/api/v1/datasets", files={"file": ("pairs.jsonl", data)}, headers=alice)
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["format"] == "preference"
    assert dataset["mapping"]["mode"] == "preference"
    assert dataset["mapping"]["layout"] == "sharegpt"

    preview = client.post(
        f"/api/v1/datasets/{dataset['id']}/preview", json=dataset["mapping"], headers=alice
    ).json()
    prompt = "<bos><start_of_turn>user\nWhat is 1 + 1?<end_of_turn>\n<start_of_turn>model\n"
    assert preview[1]["pair"] == {
        "prompt": prompt,
        "chosen": "2.<end_of_turn>\n",
        "rejected": "Maybe 3, or more.<end_of_turn>\n",
    }

    config = {"mapping": dataset["mapping"], "split": {"test_size": 0.25, "seed": 1}}
    response = client.post(f"/api/v1/datasets/{dataset['id']}/process", json=config, headers=alice)
    assert response.status_code == 201, response.text
    processed = response.json()
    assert processed["status"] == "ready" and processed["splits"] == {"train": 30, "test": 10}
    report = client.get(f"/api/v1/datasets/{processed['id']}/report", headers=alice).json()
    assert (report["rows_in"], report["rows_out"]) == (42, 40)
    problems = {p["code"]: p for p in report["problems"]}
    assert problems["identical_answers"]["examples"][0]["row"] == 40
    assert problems["missing_answer"]["examples"][0]["detail"] == "the rejected answer is missing"
    page = client.get(
        f"/api/v1/datasets/{processed['id']}/rows?split=train&limit=1", headers=alice
    ).json()
    row = page["rows"][0]
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert [m["role"] for m in row["prompt"]] == ["user"]
    assert [m["role"] for m in row["chosen"] + row["rejected"]] == ["assistant", "assistant"]
    stats = client.get(f"/api/v1/datasets/{processed['id']}/stats", headers=alice).json()
    assert set(stats["pairs"]) == {"train", "test"}
    margin = stats["pairs"]["train"]["margin_tokens"]
    # Every rejected answer is longer than its chosen one.
    assert margin["count"] == 30 and margin["rejected_longer"] == 30 and margin["max"] < 0
