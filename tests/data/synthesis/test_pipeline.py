"""The pipeline end to end against the loopback model: a PDF is extracted and chunked, each
chunk's request is answered deterministically from its passage, and the rows kept name the
document, pages and chunk the answer really comes from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.data.test_documents import make_pdf
from tests.llm_server import LlmServer
from tuneforge.data.documents import Chunk, ChunkSettings, chunk_documents, extract
from tuneforge.data.formats import guess_mapping
from tuneforge.data.synthesis.curate import Drop
from tuneforge.data.synthesis.generator import (
    Completion,
    EndpointGenerator,
    GenerationFailed,
    complete_all,
    open_generator,
)
from tuneforge.data.synthesis.pipeline import (
    chunk_messages,
    chunk_requests,
    finish,
    pages_text,
    rows_of_chunk,
)
from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.settings import Settings

PASSAGE = re.compile(r"<<<\n(.*)\n>>>", re.DOTALL)
FACT = re.compile(r"The (\w+) valve of page (\d+) opens at (\d+) bar\.")


def _reply(body: dict[str, Any]) -> str:
    """A model that writes one pair per fact of its passage, in a code fence with prose, and
    one pair from outside knowledge."""
    passage = PASSAGE.search(body["messages"][-1]["content"])
    assert passage is not None
    items = [
        f'{{"question": "At what pressure does the {name} valve open?", '
        f'"answer": "The {name} valve of page {page} opens at {bar} bar."}}'
        for name, page, bar in FACT.findall(passage.group(1))
    ]
    items.append('{"question": "Who built the first valve?", "answer": "Ctesibius of Alexandria."}')
    return "Here you are:\n```json\n[" + ", ".join(items) + "]\n```"


def _pdf(path: Path) -> Path:
    names = ["red", "blue", "green", "amber", "violet", "white"]
    return make_pdf(
        path,
        [
            [f"The {name} valve of page {n} opens at {n * 2} bar.", "Check it every month."]
            for n, name in enumerate(names, start=1)
        ],
    )


def _spec(url: str, **fields: Any) -> SynthesisSpec:
    return SynthesisSpec(
        generator=EndpointGenerator(base_url=url, model="writer", concurrency=3),
        chunking=fields.pop("chunking", ChunkSettings(max_tokens=40, overlap_tokens=0)),
        **fields,
    )


def _run(chunks: list[Chunk], spec: SynthesisSpec) -> tuple[list[dict[str, Any]], list[Drop]]:
    rows: list[dict[str, Any]] = []
    drops: list[Drop] = []
    generator = open_generator(spec.generator, api_key=None, settings=Settings())

    def on_done(index: int, result: Completion | GenerationFailed) -> None:
        assert isinstance(result, Completion), result
        made, dropped = rows_of_chunk(chunks[index], result, spec)
        rows.extend(made)
        drops.extend(dropped)

    try:
        complete_all(generator, chunk_requests(chunks, spec), on_done)
    finally:
        generator.close()
    kept, duplicates = finish(sorted(rows, key=lambda r: r["chunk_index"]), spec)
    return kept, drops + duplicates


def test_rows_carry_provenance_that_matches_the_pages(tmp_path: Path) -> None:
    (document,) = extract(_pdf(tmp_path / "valves.pdf"), "valves.pdf")
    chunks = chunk_documents([document], ChunkSettings(max_tokens=40, overlap_tokens=0))
    assert len(chunks) >= 3 and any(len(chunk.pages) > 1 for chunk in chunks)
    with LlmServer(reply=_reply, delay=0.01) as server:
        spec = _spec(server.url)
        rows, drops = _run(chunks, spec)
    assert server.peak > 1 and len(server.requests) == len(chunks)
    assert len(rows) == 6  # one per valve, each once (the overlap gave no repeats)
    by_id = {chunk.id: chunk for chunk in chunks}
    for row in rows:
        page = int(re.search(r"of page (\d+)", row["answer"]).group(1))  # type: ignore[union-attr]
        chunk = by_id[row["chunk_id"]]
        assert page in row["pages"] and row["pages"] == list(chunk.pages)
        assert row["document"] == "valves.pdf" and row["chunk_index"] == chunk.index
        assert row["section"] is None and row["task"] == "qa"
        assert list(row)[:2] == ["question", "answer"]
    assert sorted(int(re.findall(r"\d+", r["answer"])[0]) for r in rows) == [1, 2, 3, 4, 5, 6]
    assert {drop.reason for drop in drops} == {"ungrounded"}
    assert len(drops) == len(chunks)  # the made-up pair of every chunk
    guess = guess_mapping(list(rows[0]), rows)  # maps to conversations with no input
    assert guess.format == "question_answer" and guess.sure


def test_the_request_names_the_chunks_source_and_count(tmp_path: Path) -> None:
    (document,) = extract(_pdf(tmp_path / "valves.pdf"), "valves.pdf")
    chunk = chunk_documents([document], ChunkSettings(max_tokens=40, overlap_tokens=0))[0]
    spec = _spec(
        "http://127.0.0.1:1/v1",
        task="instructions",
        pairs_per_chunk=5,
        template="From {document} ({pages}, {section}) write {count}: {text}",
    )
    (message,) = chunk_messages(chunk, spec)
    assert message["role"] == "user"
    assert message["content"] == (
        f"From valves.pdf ({pages_text(chunk.pages)}, none) write 5: {chunk.text}"
    )
    assert pages_text([3]) == "3" and pages_text([3, 4, 5]) == "3-5"
    assert pages_text([3, 5]) == "3, 5" and pages_text([]) == "none"


def _chunk(text: str = "The red valve opens at 2 bar. It is checked monthly.") -> Chunk:
    return Chunk("c1", "manual.pdf", 0, (4,), ("Valves",), text, 20)


def test_replies_without_pairs_are_counted_not_fatal() -> None:
    spec = _spec("http://127.0.0.1:1/v1", pairs_per_chunk=1)
    rows, drops = rows_of_chunk(_chunk(), Completion("I cannot help with that.", 1, 1), spec)
    assert rows == [] and [d.reason for d in drops] == ["unparsable"]
    rows, drops = rows_of_chunk(_chunk(), Completion('[{"note": "none"}]', 1, 1), spec)
    assert rows == [] and [d.reason for d in drops] == ["no_pairs"]
    reply = (
        '[{"question": "At what pressure does the red valve open?", "answer": "At 2 bar."}, '
        '{"question": "How often is the red valve checked?", "answer": "Monthly."}, {"x": 1}]'
    )
    rows, drops = rows_of_chunk(_chunk(), Completion(reply, 1, 1), spec)
    assert [r["answer"] for r in rows] == ["At 2 bar."]
    assert rows[0]["section"] == "Valves" and rows[0]["pages"] == [4]
    assert sorted(d.reason for d in drops) == ["malformed", "over_count"]


@pytest.mark.parametrize(
    ("task", "reply", "columns"),
    [
        (
            "instructions",
            '[{"instruction": "Explain when the red valve opens.", "response": "At 2 bar."}]',
            ("instruction", "output"),
        ),
        (
            "reasoning",
            '[{"question": "Is the red valve open at 3 bar?", "reasoning": "It opens at 2 bar '
            'and 3 is above 2.", "answer": "Yes, open."}]',
            ("question", "answer"),
        ),
    ],
)
def test_each_task_makes_rows_under_its_columns(
    task: str, reply: str, columns: tuple[str, str]
) -> None:
    spec = _spec("http://127.0.0.1:1/v1", task=task)
    rows, drops = rows_of_chunk(_chunk(), Completion(reply, 1, 1), spec)
    assert drops == [] and len(rows) == 1
    assert list(rows[0])[:2] == list(columns) and rows[0]["task"] == task


def test_finish_drops_near_duplicates_across_chunks_deterministically() -> None:
    spec = _spec("http://127.0.0.1:1/v1")
    question = (
        "At what pressure does the red valve of the main water pump open during the monthly "
        "check of the system?"
    )
    rows = [
        {"question": question, "answer": "At 2 bar.", "chunk_index": 0},
        {"question": "How often is the red valve checked?", "answer": "Monthly.", "chunk_index": 0},
        # one word changed: 19 of their 21 shingles are shared (Jaccard 0.9)
        {"question": question.replace("At", "Under"), "answer": "At 2 bar.", "chunk_index": 1},
    ]
    kept, drops = finish(rows, spec)
    assert kept == rows[:2]
    assert [d.reason for d in drops] == ["near_duplicate"]
    assert finish(rows, spec) == (kept, drops)
    curation = spec.curation.model_copy(update={"near_duplicate_similarity": None})
    assert finish(rows, spec.model_copy(update={"curation": curation})) == (rows, [])
