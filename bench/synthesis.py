"""Benchmark: making training data from documents, TuneForge against a baseline.

    python bench/synthesis.py [--pages 300] [--models-dir DIR] [--repeats 3] [--profile]
                              [--slots 4] [--delay 0.05] [--gen-chunks N] [--skip-extraction]

Part 1, extraction and chunking: a generated PDF (deterministic English-like prose, `--pages`
pages, each starting "page N" and holding a few paragraphs) is turned into chunks of about 512
Gemma tokens with 64 tokens of overlap, in the same run and from the page cache for both:

* TuneForge: `tuneforge.data.documents.extract` (format from the bytes, page tree checked within
  the limits, the file hashed for chunk ids, text tidied) and `chunk_documents` with the real
  Gemma 3 tokenizer (loaded and warmed up before timing): chunks that keep their pages and
  section and never exceed the budget.
* Baseline: what a knowledgeable user writes: `pypdf.PdfReader`, `page.extract_text()` in a
  loop, the texts joined, and fixed windows of 2,048 characters (4 characters per token) with a
  256-character overlap, with no tokenizer, no provenance and no limits.

Both must cover every page (asserted: each "page N" marker is in some chunk); the best of
`--repeats` runs of each is reported as chunks/s, pages/s and their ratio. PDF generation is not
timed.

Part 2, generation: how busy the pipeline keeps the model. The same PDF's chunks go through
the whole pipeline (`chunk_requests`, `complete_all`, `rows_of_chunk` with curation, `finish`)
against the loopback OpenAI-compatible server of the tests, standing in for a model that
decodes `--slots` requests at once and takes `--delay` seconds for each (its other requests
wait in a queue). **Busy share** = the time the server's slots spent answering (measured in
the server) / (the wall time of the generation x the slots): 100% means the model never waited
for the pipeline. The baseline is the loop a knowledgeable user writes first, one request
after another (`concurrency` 1); TuneForge's default sends `concurrency` 8 at once (twice the
slots of a typical server, so a request always waits in its queue).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tuneforge.data.documents import ChunkSettings, chunk_documents, extract, gemma_counter
from tuneforge.data.documents.chunking import Chunk, TokenCounter
from tuneforge.data.synthesis.curate import Drop
from tuneforge.data.synthesis.generator import (
    Completion,
    EndpointGenerator,
    GenerationFailed,
    complete_all,
    open_generator,
)
from tuneforge.data.synthesis.pipeline import chunk_requests, finish, rows_of_chunk
from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.settings import Settings

WORDS = """
the of and to a in is it you that he was for on are with as his they be at one have this from or
had by not word but what some we can out other were all there when up use your how said an each
she which do their time if will way about many then them write would like so these her long make
thing see him two has look more day could go come did number sound no most people my over know
water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
valve pressure filter pump sensor cable switch panel voltage battery motor manual warranty
""".split()  # noqa: SIM905
SETTINGS = ChunkSettings(max_tokens=512, overlap_tokens=64)
BASELINE_WINDOW = SETTINGS.max_tokens * 4
BASELINE_OVERLAP = SETTINGS.overlap_tokens * 4
LINES_PER_PAGE = 46
WORDS_PER_LINE = 13
_MARKER = re.compile(r"\bpage (\d+)\b")


def generate_pdf(path: Path, pages: int, seed: int = 7) -> None:
    """A PDF of `pages` pages of prose: "page N" on top, paragraphs separated by blank lines."""
    rng = np.random.default_rng(seed)
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for number in range(1, pages + 1):
        lines = [f"page {number}", ""]
        while len(lines) < LINES_PER_PAGE:
            if rng.random() < 0.15:
                lines.append("")
            words = [str(w) for w in rng.choice(WORDS, size=WORDS_PER_LINE)]
            lines.append(" ".join(words).capitalize() + ("." if rng.random() < 0.5 else ","))
        ops = ["BT /F1 10 Tf 56 760 Td 15 TL"] + [f"({line}) Tj T*" for line in lines] + ["ET"]
        page = writer.add_blank_page(612, 792)
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    writer.write(path)


def tuneforge_chunks(path: Path, counter: TokenCounter) -> list[str]:
    documents = extract(path, path.name)
    return [chunk.text for chunk in chunk_documents(documents, SETTINGS, counter)]


def baseline_chunks(path: Path) -> list[str]:
    reader = PdfReader(path)
    text = "\n".join(page.extract_text() for page in reader.pages)
    step = BASELINE_WINDOW - BASELINE_OVERLAP
    return [text[i : i + BASELINE_WINDOW] for i in range(0, len(text), step)]


@dataclass
class Timing:
    chunks: int
    seconds: float


def _best(run: Callable[[], list[str]], repeats: int, pages: int) -> tuple[Timing, list[str]]:
    best: Timing | None = None
    chunks: list[str] = []
    for _ in range(repeats):
        start = time.perf_counter()
        chunks = run()
        seconds = time.perf_counter() - start
        if best is None or seconds < best.seconds:
            best = Timing(len(chunks), seconds)
    assert best is not None
    covered = {int(n) for text in chunks for n in _MARKER.findall(text)}
    assert covered == set(range(1, pages + 1)), "a side lost pages"
    return best, chunks


def extraction_section(path: Path, pages: int, counter: TokenCounter, repeats: int) -> None:
    ours, our_chunks = _best(lambda: tuneforge_chunks(path, counter), repeats, pages)
    theirs, _ = _best(lambda: baseline_chunks(path), repeats, pages)
    largest = max(counter(our_chunks))
    assert largest <= SETTINGS.max_tokens, largest
    print(
        f"Extraction and chunking: {pages} pages, {path.stat().st_size / 1e6:.1f} MB of PDF; "
        f"chunks of at most {SETTINGS.max_tokens} Gemma tokens (largest {largest}), "
        f"{SETTINGS.overlap_tokens} overlap; baseline windows of {BASELINE_WINDOW} characters"
    )
    for name, timing in (("TuneForge", ours), ("baseline", theirs)):
        rate = timing.chunks / timing.seconds
        print(
            f"{name:>10}: {timing.seconds:6.2f} s  {timing.chunks:5,} chunks  "
            f"{rate:8,.1f} chunks/s  {pages / timing.seconds:7,.1f} pages/s"
        )
    print(f"     ratio: {theirs.seconds / ours.seconds:.2f}x (pages/s, TuneForge over baseline)")


_PASSAGE = re.compile(r"<<<\n(.*)\n>>>", re.DOTALL)
_SENTENCE = re.compile(r"[^.]{30,}?\.")


def grounded_pairs(body: dict[str, Any]) -> str:
    """A deterministic model: one question/answer pair per long sentence of the passage (as
    many as the request asks for), in the JSON the default template asks for."""
    prompt = body["messages"][-1]["content"]
    passage = _PASSAGE.search(prompt)
    count = int(m.group(1)) if (m := re.search(r"Write (\d+)", prompt)) else 3
    sentences = _SENTENCE.findall(passage.group(1) if passage else "")[:count]
    pairs = [
        {
            "question": f"What does the manual say about {' '.join(s.split()[1:4]).lower()}?",
            "answer": " ".join(s.split()),
        }
        for s in sentences
    ]
    return json.dumps(pairs)


@dataclass
class GenerationRun:
    concurrency: int
    wall: float
    busy: float
    peak: int
    kept: int
    dropped: Counter[str]
    finish_seconds: float


def generate_rows(chunks: list[Chunk], concurrency: int, slots: int, delay: float) -> GenerationRun:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.llm_server import LlmServer  # the loopback model of the tests

    with LlmServer(reply=grounded_pairs, delay=delay, slots=slots) as server:
        spec = SynthesisSpec(
            generator=EndpointGenerator(base_url=server.url, model="bench", concurrency=concurrency)
        )
        generator = open_generator(spec.generator, api_key=None, settings=Settings())
        rows: list[dict[str, Any]] = []
        drops: list[Drop] = []

        def on_done(index: int, result: Completion | GenerationFailed) -> None:
            assert isinstance(result, Completion), result
            made, dropped = rows_of_chunk(chunks[index], result, spec)
            rows.extend(made)
            drops.extend(dropped)

        start = time.perf_counter()
        complete_all(generator, chunk_requests(chunks, spec), on_done)
        wall = time.perf_counter() - start
        generator.close()
        start = time.perf_counter()
        kept, duplicates = finish(sorted(rows, key=lambda row: row["chunk_index"]), spec)
        finish_seconds = time.perf_counter() - start
        assert len(server.requests) == len(chunks)
        return GenerationRun(
            concurrency,
            wall,
            server.busy_seconds,
            server.peak,
            len(kept),
            Counter(drop.reason for drop in drops + duplicates),
            finish_seconds,
        )


def generation_section(path: Path, counter: TokenCounter, args: argparse.Namespace) -> None:
    chunks = chunk_documents(extract(path, path.name), SETTINGS, counter)
    if args.gen_chunks:
        chunks = chunks[: args.gen_chunks]
    print(
        f"\nGeneration: {len(chunks)} chunks through the pipeline, against a model with "
        f"{args.slots} slots taking {args.delay * 1000:.0f} ms per request"
    )
    for concurrency in sorted(
        {1, args.slots, EndpointGenerator.model_fields["concurrency"].default, args.slots * 2}
    ):
        run = generate_rows(chunks, concurrency, args.slots, args.delay)
        share = run.busy / (run.wall * args.slots)
        dropped = ", ".join(f"{n} {reason}" for reason, n in run.dropped.most_common())
        print(
            f"concurrency {concurrency:>2}: {run.wall:6.2f} s  {len(chunks) / run.wall:7.1f} "
            f"chunks/s  busy share {share:6.1%}  (peak {run.peak} at once; kept {run.kept:,}, "
            f"dropped {dropped or 'none'}; finish {run.finish_seconds * 1000:.0f} ms)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    parser.add_argument("--profile", action="store_true", help="cProfile TuneForge's path")
    parser.add_argument("--slots", type=int, default=4, help="requests the model serves at once")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--gen-chunks", type=int, default=0, help="chunks generated (0: all)")
    parser.add_argument("--skip-extraction", action="store_true", help="generation only")
    args = parser.parse_args(argv)
    counter = gemma_counter(args.models_dir or Settings().models_dir)
    counter(["Warm up the tokenizer."])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manual.pdf"
        generate_pdf(path, args.pages)
        path.read_bytes()  # both read it from the page cache
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(tuneforge_chunks, path, counter)
            pstats.Stats(profiler).sort_stats("cumtime").print_stats(30)
            return
        if not args.skip_extraction:
            extraction_section(path, args.pages, counter, args.repeats)
        generation_section(path, counter, args)


if __name__ == "__main__":
    main(sys.argv[1:])
