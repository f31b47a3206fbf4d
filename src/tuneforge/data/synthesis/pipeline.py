"""From chunks to dataset rows: the request for each chunk, the rows made from its reply, and
the step across all chunks (near-duplicates). The synthesis job sends the requests with
`generator.complete_all`, calls `rows_of_chunk` as each reply arrives (and checkpoints the
result, so a resumed job does not ask again), then `finish` once every chunk is done:

    requests = chunk_requests(chunks, spec)
    complete_all(generator, requests, lambda i, reply: ... rows_of_chunk(chunks[i], reply, spec))
    rows, dropped = finish(all_rows, spec)

A row holds the example under the task's two columns (`question`/`answer` or
`instruction`/`output`, see `templates`), then where it comes from: `document`, `pages` (the
PDF pages or slides of its chunk), `section`, `chunk_id`, `chunk_index`, and `task`. Such rows
are a raw dataset that maps to conversations with no input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneforge.data.documents.chunking import Chunk
from tuneforge.data.synthesis.curate import Drop, check_pair, judge_pairs, near_duplicates
from tuneforge.data.synthesis.generator import Completion
from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.data.synthesis.templates import SHAPES, parse_reply, render
from tuneforge.evaluation.judge import Judge

Row = dict[str, Any]


def pages_text(pages: Sequence[int]) -> str:
    """`3`, `3-5` for consecutive pages, `3, 5, 9` otherwise; `none` without pages."""
    if not pages:
        return "none"
    if list(pages) == list(range(pages[0], pages[-1] + 1)) and len(pages) > 1:
        return f"{pages[0]}-{pages[-1]}"
    return ", ".join(str(page) for page in pages)


def chunk_messages(chunk: Chunk, spec: SynthesisSpec) -> list[dict[str, str]]:
    """The chat that asks the model for the chunk's examples: one user turn, the template
    filled in."""
    template = spec.template or SHAPES[spec.task].template
    content = render(
        template,
        {
            "text": chunk.text,
            "document": chunk.document,
            "section": chunk.section_path or "none",
            "pages": pages_text(chunk.pages),
            "count": str(spec.pairs_per_chunk),
        },
    )
    return [{"role": "user", "content": content}]


def chunk_requests(chunks: Sequence[Chunk], spec: SynthesisSpec) -> list[list[dict[str, str]]]:
    """One request per chunk, in the chunks' order."""
    return [chunk_messages(chunk, spec) for chunk in chunks]


def rows_of_chunk(
    chunk: Chunk, completion: Completion, spec: SynthesisSpec, judge: Judge | None = None
) -> tuple[list[Row], list[Drop]]:
    """The rows kept from the model's reply to the chunk's request, and the examples dropped
    with their reasons (a reply with no example at all is one drop: `unparsable` when it holds
    no JSON objects, `no_pairs` when none of them is a usable example).

    With a judge in the spec's curation, `judge` is that judge opened (`Judge(judge_spec(
    spec.curation.judge), api_key)`); its requests for the chunk's examples go out together.
    """
    shape = SHAPES[spec.task]
    curation = spec.curation
    reply = parse_reply(completion.text, spec.task)
    drops: list[Drop] = []
    if not reply.pairs:
        reason = "no_pairs" if reply.found_json else "unparsable"
        return [], [Drop(reason, "", "", completion.text[:200])]
    drops.extend(
        Drop("malformed", "", "", "an object without both fields") for _ in range(reply.unusable)
    )
    pairs = reply.pairs[: spec.pairs_per_chunk]
    drops.extend(Drop("over_count", p, a) for p, a in reply.pairs[spec.pairs_per_chunk :])
    passed: list[tuple[str, str]] = []
    for prompt, answer in pairs:
        dropped = check_pair(prompt, answer, chunk.text, curation, shape.asks_question)
        if dropped is None:
            passed.append((prompt, answer))
        else:
            drops.append(dropped)
    if curation.judge is not None and passed:
        if judge is None:
            raise ValueError("The spec's curation has a judge: pass it opened as `judge`.")
        verdicts = judge_pairs(judge, passed, chunk.text)
        kept = []
        for (prompt, answer), verdict in zip(passed, verdicts, strict=True):
            if verdict is None:
                drops.append(Drop("judge_unreadable", prompt, answer))
            elif verdict.score < curation.judge_min_score:
                detail = f"score {verdict.score}: {verdict.reason}"
                drops.append(Drop("judge_low", prompt, answer, detail))
            else:
                kept.append((prompt, answer))
        passed = kept
    return [_row(chunk, spec, prompt, answer) for prompt, answer in passed], drops


def _row(chunk: Chunk, spec: SynthesisSpec, prompt: str, answer: str) -> Row:
    shape = SHAPES[spec.task]
    return {
        shape.prompt: prompt,
        shape.answer: answer,
        "document": chunk.document,
        "pages": list(chunk.pages),
        "section": chunk.section_path or None,
        "chunk_id": chunk.id,
        "chunk_index": chunk.index,
        "task": spec.task,
    }


def finish(rows: Sequence[Row], spec: SynthesisSpec) -> tuple[list[Row], list[Drop]]:
    """The rows of every chunk (in the chunks' order) without near-duplicates: a row nearly
    the same as an earlier one is dropped (`near_duplicate`), deterministically for the spec's
    seed."""
    threshold = spec.curation.near_duplicate_similarity
    if threshold is None:
        return list(rows), []
    shape = SHAPES[spec.task]
    prompts = [str(row.get(shape.prompt, "")) for row in rows]
    answers = [str(row.get(shape.answer, "")) for row in rows]
    originals = near_duplicates(
        [f"{p}\n{a}" for p, a in zip(prompts, answers, strict=True)], threshold, spec.seed
    )
    kept: list[Row] = []
    drops: list[Drop] = []
    for row, prompt, answer, original in zip(rows, prompts, answers, originals, strict=True):
        if original is None:
            kept.append(row)
        else:
            drops.append(Drop("near_duplicate", prompt, answer, f"like: {prompts[original]}"))
    return kept, drops
