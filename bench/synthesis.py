"""Benchmark: making training data from documents, TuneForge against a baseline.

    python bench/synthesis.py [--pages 300] [--models-dir DIR] [--repeats 3] [--profile]

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
timed. Part 2, the share of generation time the model is kept busy, belongs to the synthesis job
and is added to this file with it, as another section after `extraction_section`.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tuneforge.data.documents import ChunkSettings, chunk_documents, extract, gemma_counter
from tuneforge.data.documents.chunking import TokenCounter
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    parser.add_argument("--profile", action="store_true", help="cProfile TuneForge's path")
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
        extraction_section(path, args.pages, counter, args.repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
