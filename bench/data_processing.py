"""Benchmark: processing a prompt/response CSV into a dataset, TuneForge against a baseline.

    python bench/data_processing.py [--rows 100000] [--models-dir DIR] [--profile]

Generates a CSV of English-like prompts and responses with a category (deterministic), then, in
the same run and with the same real Gemma 3 tokenizer already loaded and warmed up for both, turns
it into conversations checked for blanks, duplicates (exact and but for case and spaces) and
length, holds out a seeded 10% test split, builds the split tables and measures token statistics:

* TuneForge: pyarrow reads the CSV; `tuneforge.data.process.process` does the rest, exactly as a
  processing job does (the `fields` mapping prompt → user, response → assistant).
* Baseline: pandas `read_csv`, `iterrows`, a dict per row, the checks in plain Python, the same
  chat template, one `tokenizer.encode` per prompt and per answer, a seeded shuffle, pyarrow
  tables from the kept records, and the statistics in pure Python.

Both keep the same rows and give the same statistics (asserted); CSV generation is not timed.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import math
import pstats
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from tokenizers import Tokenizer

from tuneforge.data.config import ProcessingConfig
from tuneforge.data.conversation import Message, message
from tuneforge.data.mapping import FieldSource, MappingSpec
from tuneforge.data.process import process
from tuneforge.data.splits import SplitSpec
from tuneforge.data.stats import PERCENTILES, TOP_LABELS, DatasetStats, histogram_width
from tuneforge.models.chat_template import prompt_and_answer
from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer
from tuneforge.settings import Settings

COMMON_WORDS = """
the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by not word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long
make thing see him two has look more day could go come did number sound no most people my over
know water than call first who may down side been now find any new work part take get place made
live where after back little only round man year came show every good me give our under name
very through just form sentence great think say help low line differ turn cause much mean before
move right boy old too same tell does set three want air well also play small end put home read
hand port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self earth
father head stand own page should country found answer school grow study still learn plant cover
food sun four between state keep eye never last let thought city tree cross farm hard start
might story saw far sea draw left late run while press close night real life few north open seem
together next white children begin got walk example ease paper group always music those both
mark often letter until mile river car feet care second book carry took science eat room friend
began idea fish mountain stop once base hear horse cut sure watch color face wood main enough
plain girl usual young ready above ever red list though feel talk bird soon body dog family
direct pose leave song measure door product black short numeral class wind question happen
complete ship area half rock order fire south problem piece told knew pass since top whole king
space heard best hour better true during hundred five remember step early hold west ground
interest reach fast verb sing listen six table travel less morning ten simple several vowel
toward war lay against pattern slow center love person money serve appear road map rain rule
govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine note
wait plan figure star box noun field rest correct able pound done beauty drive stood contain
front teach week final gave green quick develop ocean warm free minute strong special mind
behind clear tail produce fact street inch multiply nothing course stay wheel full force blue
object decide surface deep moon island foot system busy test record boat common gold possible
plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought heat snow
tire bring yes distant fill east paint language among
"""
SYLLABLE_LIST = """
ba be bi bo ca co da de di do fa fe fi ga go ha he hi ka ke la le li lo lu ma me mi mo na ne ni
no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi tion ment ing er ly al ous ic ist
ure ent ate ter con pro
"""
COMMON, SYLLABLES = COMMON_WORDS.split(), SYLLABLE_LIST.split()
CATEGORIES = 80
RARE_WORDS = 0.08  # share of words drawn from a long tail of made-up rare words
POOL = 250_000
MAX_LENGTH = 1024  # drops the longest rows of the long tail
TEST_SIZE = 0.1
SEED = 42


def _word_pool(rng: np.random.Generator) -> np.ndarray:
    """Words in their frequencies: Zipf over common English words and over rare made-up ones."""
    rare = sorted({"".join(rng.choice(SYLLABLES, size=rng.integers(2, 5))) for _ in range(20_000)})
    pools = []
    for words, size in ((COMMON, POOL - int(POOL * RARE_WORDS)), (rare, int(POOL * RARE_WORDS))):
        zipf = 1 / np.arange(1, len(words) + 1)
        pools.append(rng.choice(np.array(words, dtype=object), size=size, p=zipf / zipf.sum()))
    return np.concatenate(pools)


def _prose(rng: np.random.Generator, pool: np.ndarray, words: int) -> str:
    """About `words` words: capitalised sentences, commas, now and then a number."""
    out, start = [], True
    ends = rng.random(words) < 1 / 12
    ends[-1] = True
    for word, end, roll in zip(
        pool[rng.integers(0, len(pool), size=words)], ends, rng.random(words), strict=True
    ):
        text = str(int(roll * 100_000)) if roll < 0.015 else word
        out.append(
            (text.capitalize() if start else text) + ("." if end else "," if roll > 0.93 else "")
        )
        start = bool(end)
    return " ".join(out)


def _texts(rng: np.random.Generator, pool: np.ndarray, count: int, median: float) -> list[str]:
    lengths = np.clip(rng.lognormal(math.log(median), 0.8, size=count), 1, 1500).astype(int)
    texts = [_prose(rng, pool, int(n)) for n in lengths]
    for i in np.flatnonzero(rng.random(count) < 0.15):  # some answers are lists
        texts[i] = "Here is what to do:\n- " + texts[i].replace(". ", ".\n- ")
    for i in np.flatnonzero(rng.random(count) < 0.03):  # two spaces after a full stop
        texts[i] = texts[i].replace(". ", ".  ")
    return texts


def generate_csv(path: Path, rows: int, seed: int = 1234) -> int:
    """Write a CSV of `prompt`, `response` and `category` columns; returns how many words."""
    rng = np.random.default_rng(seed)
    pool = _word_pool(rng)
    prompts = _texts(rng, pool, rows, median=15)
    responses = _texts(rng, pool, rows, median=45)
    categories = rng.zipf(1.5, size=rows) % CATEGORIES
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["prompt", "response", "category"])
        writer.writerows(zip(prompts, responses, (f"topic-{c}" for c in categories), strict=True))
    return sum(len(text.split()) for text in prompts + responses)


def _config(test_size: float | None) -> ProcessingConfig:
    return ProcessingConfig(
        mapping=MappingSpec(
            user=FieldSource(column="prompt"), assistant=FieldSource(column="response")
        ),
        split=SplitSpec(mode="none")
        if test_size is None
        else SplitSpec(mode="manual", test_size=test_size, seed=SEED),
        max_length=MAX_LENGTH,
        drop_duplicates=True,
        label_column="category",
    )


def tuneforge_stats(
    path: Path, tokenizer: Tokenizer, batch_rows: int | None = None, test_size: float | None = None
) -> DatasetStats:
    """TuneForge's path: pyarrow reads the CSV, `process` does the rest (and builds the split
    tables, which the baseline builds too)."""
    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    result = process(
        {"train": table},
        _config(test_size),
        lambda texts: count_tokens(texts, tokenizer),
        batch_rows=batch_rows,
    )
    return result.stats


def _summary(values: list[int]) -> dict[str, Any]:
    """Length statistics in pure Python, as `LengthStats` defines them."""
    ordered = sorted(values)
    n = len(ordered)
    width = histogram_width(ordered[-1] - ordered[0] + 1)
    first = ordered[0] - ordered[0] % width
    histogram = Counter((v - first) // width for v in ordered)
    return {
        "count": n,
        "min": ordered[0],
        "mean": sum(ordered) / n,
        "max": ordered[-1],
        **{f"p{p}": ordered[math.ceil(p * n / 100) - 1] for p in PERCENTILES},
        "histogram": [
            {"start": first + i * width, "end": first + (i + 1) * width, "count": histogram[i]}
            for i in range((ordered[-1] - first) // width + 1)
        ],
    }


def baseline_stats(
    path: Path, tokenizer: Tokenizer, test_size: float | None = None
) -> dict[str, Any]:
    """The straightforward way: pandas reads the CSV; for each row (`iterrows`) a dict, the
    checks in plain Python, one `encode` per prompt and per answer; a seeded shuffle splits what
    is kept, pyarrow makes the split tables, and the statistics are pure Python."""
    frame = pd.read_csv(path, keep_default_na=False)
    kept: list[tuple[list[Message], int, int, str, str]] = []
    seen: set[tuple[str, str]] = set()
    seen_normalized: set[tuple[str, str]] = set()
    for _, row in frame.iterrows():
        record = {"prompt": row["prompt"], "response": row["response"], "category": row["category"]}
        question, response = str(record["prompt"]), str(record["response"])
        if not question.strip() or not response.strip():
            continue
        exact = (question, response)
        loose = (" ".join(question.lower().split()), " ".join(response.lower().split()))
        if exact in seen:
            continue
        seen.add(exact)
        if loose in seen_normalized:
            continue
        seen_normalized.add(loose)
        conversation = [message("user", question), message("assistant", response)]
        prompt, answer = prompt_and_answer(conversation)
        prompt_length = len(tokenizer.encode(prompt, add_special_tokens=False).ids)
        answer_length = len(tokenizer.encode(answer, add_special_tokens=False).ids)
        if prompt_length + answer_length > MAX_LENGTH:
            continue
        kept.append(
            (conversation, prompt_length, answer_length, prompt + answer, record["category"])
        )
    order = list(range(len(kept)))
    random.Random(SEED).shuffle(order)  # noqa: S311 (a reproducible split, not secrets)
    held_out = set(order[: round(len(kept) * test_size)] if test_size else [])
    splits = {"train": [i for i in range(len(kept)) if i not in held_out]}
    if test_size is not None:
        splits["test"] = sorted(held_out)
    tables = {
        name: pa.Table.from_pylist([{"messages": kept[i][0]} for i in indices])
        for name, indices in splits.items()
    }
    prompt_lengths = [k[1] for k in kept]
    answer_lengths = [k[2] for k in kept]
    labels = Counter(str(kept[i][4]) for indices in splits.values() for i in indices)
    texts = [k[3] for k in kept]
    top = labels.most_common(TOP_LABELS)
    return {
        "rows": {name: table.num_rows for name, table in tables.items()},
        "prompt_tokens": _summary(prompt_lengths),
        "answer_tokens": _summary(answer_lengths),
        "total_tokens": _summary(
            [p + a for p, a in zip(prompt_lengths, answer_lengths, strict=True)]
        ),
        "turns": {2: len(kept)},
        "labels": {
            "column": "category",
            "distinct": len(labels),
            "top": [{"label": label, "count": count} for label, count in top],
            "other": len(kept) - sum(count for _, count in top),
        },
        "duplicates": {
            "exact": len(texts) - len(set(texts)),
            "normalized": len(texts) - len({" ".join(t.lower().split()) for t in texts}),
        },
        "pairs": None,  # conversations: no preference pairs, feedback or reference columns
        "feedback": None,
        "reference_columns": None,
    }


def assert_same(tuneforge: DatasetStats, baseline: dict[str, Any]) -> None:
    ours = tuneforge.model_dump()
    for lengths in ("prompt_tokens", "answer_tokens", "total_tokens"):
        assert math.isclose(ours[lengths].pop("mean"), baseline[lengths].pop("mean"))
    assert ours == baseline, "TuneForge and the baseline disagree"


def _timed(function: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    parser.add_argument("--profile", action="store_true", help="cProfile TuneForge's path")
    args = parser.parse_args(argv)
    tokenizer = gemma_tokenizer(args.models_dir or Settings().models_dir)
    count_tokens(["Warm up the tokenizer."], tokenizer)
    tokenizer.encode("Warm up the tokenizer.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        words = generate_csv(path, args.rows)
        size = path.stat().st_size
        path.read_bytes()  # both read it from the page cache
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(tuneforge_stats, path, tokenizer, None, TEST_SIZE)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        ours, ours_seconds = _timed(tuneforge_stats, path, tokenizer, None, TEST_SIZE)
        theirs, their_seconds = _timed(baseline_stats, path, tokenizer, TEST_SIZE)
    total = ours.total_tokens
    print(
        f"{args.rows:,} rows, {size / 1e6:.1f} MB of CSV, {total.mean:.0f} Gemma tokens per row "
        f"on average ({total.mean * total.count / words:.2f} tokens per word); kept "
        f"{', '.join(f'{n:,} {split}' for split, n in ours.rows.items())}"
    )
    for name, seconds in (("TuneForge", ours_seconds), ("baseline", their_seconds)):
        print(f"{name:>10}: {seconds:6.2f} s  {args.rows / seconds:9,.0f} rows/s")
    print(f"     ratio: {their_seconds / ours_seconds:.1f}x")
    print(
        f"p95 total tokens: {ours.total_tokens.p95} (TuneForge), "
        f"{theirs['total_tokens']['p95']} (baseline)"
    )
    assert ours.total_tokens.p95 == theirs["total_tokens"]["p95"]
    assert_same(ours, theirs)
    print("All statistics agree.")


if __name__ == "__main__":
    main(sys.argv[1:])
