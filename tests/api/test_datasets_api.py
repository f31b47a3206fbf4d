"""Datasets through the API: each recognised format, uploaded as a file, is detected and mapped
with no user input, and its preview is exactly Gemma's chat format; then process, page, report."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from tests.conftest import add_user, bearer

ROWS = [("What is the capital of France?", "Paris."), ("How many legs has a spider?", "Eight.")]
EXPECTED = [
    f"<bos><start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n{a}<end_of_turn>\n"
    for q, a in ROWS
]


def _parquet(records: list[dict[str, str]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buffer)
    return buffer.getvalue()


def _xlsx() -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["question", "answer"])
    for row in ROWS:
        sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _jsonl(records: list[object]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


FILES = {
    "messages": (
        "chat.jsonl",
        _jsonl(
            [
                {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                for q, a in ROWS
            ]
        ),
    ),
    "sharegpt": (
        "share.json",
        json.dumps(
            [
                {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                for q, a in ROWS
            ]
        ).encode(),
    ),
    "alpaca": (
        "alpaca.json",
        json.dumps(
            {"data": [{"instruction": q, "input": "", "output": a} for q, a in ROWS]}
        ).encode(),
    ),
    "prompt_completion": (
        "pc.parquet",
        _parquet([{"prompt": q, "completion": a} for q, a in ROWS]),
    ),
    "question_answer": (
        "qa.csv",
        b"question,answer\n" + b"".join(f'"{q}","{a}"\n'.encode() for q, a in ROWS),
    ),
    "question_answer_tsv": (
        "qa.tsv",
        ("question\tanswer\n" + "".join(f"{q}\t{a}\n" for q, a in ROWS)).encode("utf-16"),
    ),
    "question_answer_xlsx": ("qa.xlsx", _xlsx()),
}


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local")
    return client, bearer(add_user(settings, "alice"))


def upload(client, headers, name: str, data: bytes):
    return client.post("/api/v1/datasets", files={"file": (name, data)}, headers=headers)


@pytest.mark.parametrize("case", list(FILES))
def test_recognised_formats_need_no_mapping(api, case: str) -> None:
    client, alice = api
    filename, data = FILES[case]
    response = upload(client, alice, filename, data)
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["format"] == case.removesuffix("_tsv").removesuffix("_xlsx")
    assert dataset["rows"] == 2 and dataset["kind"] == "raw" and dataset["mapping"]
    preview = client.post(
        f"/api/v1/datasets/{dataset['id']}/preview", json=dataset["mapping"], headers=alice
    ).json()
    assert [p["rendered"] for p in preview] == EXPECTED
    assert all(p["problems"] == [] for p in preview)


def test_preference_pairs_and_prompts_need_no_mapping(api) -> None:
    client, alice = api
    pairs = [{"prompt": q, "chosen": a, "rejected": "No idea."} for q, a in ROWS]
    dataset = upload(client, alice, "pairs.jsonl", _jsonl(pairs)).json()
    assert dataset["format"] == "preference"
    preview = client.post(
        f"/api/v1/datasets/{dataset['id']}/preview", json=dataset["mapping"], headers=alice
    ).json()
    _, a = ROWS[0]
    rejected = EXPECTED[0].replace(a, "No idea.")
    assert preview[0]["rendered"] == EXPECTED[0] + rejected
    prompts = upload(client, alice, "prompts.csv", b"prompt,solution\nSolve 2+2,4\n").json()
    assert prompts["format"] == "prompt_only"
    preview = client.post(
        f"/api/v1/datasets/{prompts['id']}/preview", json=prompts["mapping"], headers=alice
    ).json()
    assert preview[0]["rendered"] == (
        "<bos><start_of_turn>user\nSolve 2+2<end_of_turn>\n<start_of_turn>model\n"
    )
    for raw in (dataset, prompts):
        processed = client.post(
            f"/api/v1/datasets/{raw['id']}/process",
            headers=alice,
            json={"mapping": raw["mapping"], "split": {"mode": "none"}},
        )
        assert processed.json()["status"] == "ready", processed.text


def test_plain_text_lines_are_language_modelling_data(api) -> None:
    client, alice = api
    dataset = upload(client, alice, "notes.txt", b"First line.\nSecond line.\n").json()
    assert dataset["format"] == "text" and dataset["rows"] == 2
    assert dataset["mapping"]["mode"] == "language_modeling"


def test_process_page_report_and_stats(api) -> None:
    client, alice = api
    lines = [{"question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(40)]
    lines += [lines[0], {"question": "", "answer": "nothing"}]  # a duplicate and an empty prompt
    dataset = upload(client, alice, "sums.jsonl", _jsonl(lines)).json()
    rows = client.get(
        f"/api/v1/datasets/{dataset['id']}/rows?offset=40&limit=5", headers=alice
    ).json()
    assert rows["total"] == 42 and [r["answer"] for r in rows["rows"]] == ["0", "nothing"]
    config = {
        "mapping": dataset["mapping"],
        "split": {"test_size": 0.25, "seed": 1},
        "drop_duplicates": True,
        "name": "sums",
    }
    response = client.post(f"/api/v1/datasets/{dataset['id']}/process", json=config, headers=alice)
    assert response.status_code == 201, response.text
    processed = response.json()
    assert processed["status"] == "ready" and processed["kind"] == "processed"
    assert processed["source_id"] == dataset["id"] and processed["name"] == "sums"
    assert processed["splits"] == {"train": 30, "test": 10}
    report = client.get(f"/api/v1/datasets/{processed['id']}/report", headers=alice).json()
    assert (report["rows_in"], report["rows_out"], report["dropped"]) == (42, 40, 2)
    problems = {p["code"]: p for p in report["problems"]}
    assert problems["duplicate"]["examples"][0]["row"] == 40
    assert problems["empty_field"]["examples"][0]["row"] == 41
    stats = client.get(f"/api/v1/datasets/{processed['id']}/stats", headers=alice).json()
    assert stats["rows"] == {"train": 30, "test": 10}
    assert stats["total_tokens"]["max"] >= stats["total_tokens"]["p50"] > 0
    page = client.get(
        f"/api/v1/datasets/{processed['id']}/rows?split=test&limit=3", headers=alice
    ).json()
    assert page["total"] == 10 and page["rows"][0]["messages"][-1]["role"] == "assistant"
    # Seeded: processing again gives the same split.
    again = client.post(
        f"/api/v1/datasets/{dataset['id']}/process", json=config, headers=alice
    ).json()
    again_page = client.get(
        f"/api/v1/datasets/{again['id']}/rows?split=test&limit=3", headers=alice
    ).json()
    assert again_page["rows"] == page["rows"]
    # The fail policy refuses data with problems and says why.
    strict = client.post(
        f"/api/v1/datasets/{dataset['id']}/process",
        json={**config, "on_problem": "fail"},
        headers=alice,
    ).json()
    assert strict["status"] == "failed" and "2 of 42 rows" in strict["error"]
    assert client.delete(f"/api/v1/datasets/{processed['id']}", headers=alice).status_code == 204
    assert client.get(f"/api/v1/datasets/{processed['id']}", headers=alice).status_code == 404


def test_bad_mappings_and_files_are_4xx_with_a_reason(api) -> None:
    client, alice = api
    dataset = upload(client, alice, "qa.csv", FILES["question_answer"][1]).json()
    bad = client.post(
        f"/api/v1/datasets/{dataset['id']}/process",
        json={"mapping": {"user": {"column": "nope"}, "assistant": {"column": "answer"}}},
        headers=alice,
    )
    assert bad.status_code == 422 and "nope" in bad.json()["error"]["message"]
    template = client.post(
        f"/api/v1/datasets/{dataset['id']}/preview",
        json={"user": {"template": "{question.__class__}"}, "assistant": {"column": "answer"}},
        headers=alice,
    )
    assert template.status_code == 422
    empty = upload(client, alice, "empty.csv", b"")
    assert empty.status_code == 422 and empty.json()["error"]["message"]
