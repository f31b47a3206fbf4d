"""A manual whose page N states fact N in words of its own, and a loopback model that answers
each chunk with one grounded question/answer pair per fact it is shown: so every row the
synthesis makes can be checked against the page its fact is printed on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.data.test_documents import make_pdf

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "zu")
FACT = re.compile(r"Fact (\d+): ([^\n]*?\.)(?=\s|$)")
#: The chunking that gives each PDF page a chunk of its own.
PAGE_CHUNKS = {"max_tokens": 128, "overlap_tokens": 0, "split_pages": True}


def word(i: int) -> str:
    """A made-up word, different for every i below 1,000."""
    return "".join(SYLLABLES[(i // 10**k) % 10] for k in range(3)) + "n"


def fact(n: int) -> str:
    w = [word(8 * n + k) for k in range(8)]
    return (
        f"Fact {n}: the {w[0]} {w[1]} connects the {w[2]} {w[3]} to the {w[4]} {w[5]} "
        f"beside the {w[6]} {w[7]}."
    )


def manual(path: Path, pages: int) -> Path:
    """A PDF whose page N holds `page N` and fact N."""
    return make_pdf(path, [[f"page {n}", fact(n)] for n in range(1, pages + 1)])


def facts_in(body: dict[str, Any]) -> list[int]:
    """The facts a request shows the model (in the chunk's text)."""
    prompt = " ".join(str(m.get("content", "")) for m in body["messages"])
    return sorted({int(n) for n, _ in FACT.findall(prompt)})


def reply(body: dict[str, Any]) -> str:
    """One question/answer pair per fact in the chunk, as a model asked for JSON writes it
    (inside a code fence, after a line of prose)."""
    prompt = " ".join(str(m.get("content", "")) for m in body["messages"])
    pairs = []
    for n, sentence in FACT.findall(prompt):
        words = sentence.split()
        pairs.append(
            {
                "question": f"What does the {words[1]} {words[2]} connect, according to fact {n}?",
                "answer": f"Fact {n}: {sentence}",
            }
        )
    return "Here are the pairs:\n```json\n" + json.dumps(pairs) + "\n```"


def fact_of(row: dict[str, Any]) -> int:
    match = re.search(r"Fact (\d+):", str(row["answer"]))
    assert match, row
    return int(match.group(1))
