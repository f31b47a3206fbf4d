"""Benchmark: a prompt/response CSV made into training examples, TuneForge against baselines.

    python bench/data_processing.py [--rows 100000] [--num-proc N] [--models-dir DIR] [--profile]

Generates a CSV of English-like prompts and responses with a category (deterministic; not timed),
then, in one run and with the same real Gemma 3 tokenizer loaded and warmed up for every side,
makes each row a Gemma 3 chat example, drops blank rows, duplicates (exact, and but for case and
spaces) and rows over `MAX_LENGTH` tokens, holds out a seeded 10% test split, measures token
statistics and gives every kept row its token ids and labels (the loss on the answer only):

* TuneForge: pyarrow reads the CSV and `tuneforge.data.process.process` does what a processing job
  does (the `fields` mapping prompt → user, response → assistant: the checks, the split, the
  statistics, the split tables); then each split's records become token ids and labels exactly as
  training makes them (`encode_records`, loss on the answers). Both phases are timed and shown.
* datasets: what a user who knows Hugging Face `datasets` writes for the same output:
  `Dataset.from_csv`, a batched `filter` for blanks and duplicates (one process: it remembers what
  it saw), a batched `map` over `--num-proc` processes that renders Gemma's chat template and
  calls the fast tokenizer (transformers' `PreTrainedTokenizerFast`) on the batch's prompts and
  on its answers and masks the prompts in the labels, a batched `filter` on length, `select` for
  the split, and the statistics from the length columns.
* naive: pandas `iterrows`, the checks in plain Python, one `encode` per prompt and per answer.

Every side keeps the same rows in the same splits with the same token ids and labels, row for
row, and the same statistics (asserted after the timing), so the ratios compare equal work.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import math
import os
import pstats
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
from tokenizers import Tokenizer

from tuneforge.data.config import ProcessingConfig
from tuneforge.data.mapping import FieldSource, MappingSpec
from tuneforge.data.process import process, split_records
from tuneforge.data.splits import SplitSpec
from tuneforge.data.stats import PERCENTILES, TOP_LABELS, histogram_width
from tuneforge.models.tokenizer import count_tokens, ensure_tokenizer_dir, gemma_tokenizer
from tuneforge.settings import Settings
from tuneforge.training.components.tokenize import IGNORE_INDEX, Example, encode_records

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
# Gemma 3's chat template as format strings, as a user writes it for speed (`apply_chat_template`
# renders each row through Jinja); the baselines' ids, equal to TuneForge's, check it.
PROMPT_TEXT = "<bos><start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"
ANSWER_TEXT = "{}<end_of_turn>\n"  # the newline after the turn carries no loss


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


@dataclass
class Side:
    """What one way of processing makes of the CSV: per split, the kept rows' token ids and
    labels (in the form its trainer reads: `id_rows` lists them), the statistics (as
    `DatasetStats.model_dump()` gives them) and the seconds of each timed phase."""

    examples: dict[str, Any]
    stats: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


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


class _Clock:
    """Seconds per phase: `with clock("name"):` adds the block's time to that phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._phase = ""

    def __call__(self, phase: str) -> _Clock:
        self._phase = phase
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        elapsed = time.perf_counter() - self._start
        self.seconds[self._phase] = self.seconds.get(self._phase, 0.0) + elapsed


def tuneforge_side(
    path: Path, tokenizer: Tokenizer, batch_rows: int | None = None, test_size: float | None = None
) -> Side:
    """TuneForge's path: pyarrow reads the CSV and `process` does what a processing job does;
    then training's tokenization (`encode_records`, as the SFT recipe's `encode_all` calls it)
    gives each kept record its ids and labels."""
    clock = _Clock()
    with clock("processing"):
        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
        result = process(
            {"train": table},
            _config(test_size),
            lambda texts: count_tokens(texts, tokenizer),
            batch_rows=batch_rows,
        )
    with clock("tokenization"):
        examples = {
            name: encode_records(split_records(split), tokenizer, MAX_LENGTH, assistant_only=True)
            for name, split in result.splits.items()
        }
    return Side(examples, result.stats.model_dump(), clock.seconds)


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


def _first_time() -> Callable[[list[str], list[str]], list[bool]]:
    """A batch filter that keeps the rows with a prompt and a response that no earlier row had,
    exactly or but for case and spaces (it remembers them, so it runs in one process)."""
    seen: set[tuple[str, str]] = set()
    seen_normalized: set[tuple[str, str]] = set()

    def keep(prompts: list[str], responses: list[str]) -> list[bool]:
        kept = []
        for prompt, response in zip(prompts, responses, strict=True):
            exact = (prompt, response)
            loose = (_normalized(prompt), _normalized(response))
            new = bool(prompt.strip() and response.strip()) and exact not in seen
            if new:
                seen.add(exact)
                new = loose not in seen_normalized
                seen_normalized.add(loose)
            kept.append(new)
        return kept

    return keep


def _held_out(count: int, test_size: float | None) -> dict[str, list[int]]:
    """The split TuneForge makes of `count` distinct kept rows: a seeded shuffle whose first
    `test_size` share is the test split; both splits keep the rows' order."""
    if test_size is None:
        return {"train": list(range(count))}
    order = list(range(count))
    random.Random(SEED).shuffle(order)  # noqa: S311 (a reproducible split, not secrets)
    held = round(count * test_size)
    return {"train": sorted(order[held:]), "test": sorted(order[:held])}


#: The datasets side's tokenizer, a global as in a user's script: `map`'s worker processes
#: inherit it when they fork instead of unpickling a copy each (which costs seconds).
_fast_tokenizer: Any = None


def _encode_chats(prompts: list[str], responses: list[str]) -> dict[str, list[Any]]:
    """The datasets side's `map`: a batch of rows rendered in the chat template, tokenized
    with one call for the prompts and one for the answers, the prompts masked in the labels."""
    prompt_texts = [PROMPT_TEXT.format(prompt.strip()) for prompt in prompts]
    answer_texts = [ANSWER_TEXT.format(response.strip()) for response in responses]
    prompt_ids = _fast_tokenizer(prompt_texts, add_special_tokens=False)["input_ids"]
    answer_ids = _fast_tokenizer(answer_texts, add_special_tokens=False)["input_ids"]
    pairs = list(zip(prompt_ids, answer_ids, strict=True))
    return {
        "input_ids": [p + a for p, a in pairs],
        "labels": [[IGNORE_INDEX] * len(p) + a[:-1] + [IGNORE_INDEX] for p, a in pairs],
        "prompt_tokens": [len(p) for p in prompt_ids],
        "answer_tokens": [len(a) for a in answer_ids],
        "text": [p + a for p, a in zip(prompt_texts, answer_texts, strict=True)],
    }


def datasets_side(
    path: Path, tokenizer: Any, num_proc: int | None, cache_dir: Path, test_size: float | None
) -> Side:
    """Hugging Face `datasets` used well: batched filters and a batched `map` over `num_proc`
    processes, the fast tokenizer called once per batch of prompts and once per batch of answers."""
    from datasets import Dataset

    global _fast_tokenizer
    _fast_tokenizer = tokenizer
    clock = _Clock()
    with clock("processing"):
        data = Dataset.from_csv(str(path), cache_dir=str(cache_dir), keep_default_na=False)
        data = data.filter(_first_time(), batched=True, input_columns=["prompt", "response"])
        data = data.map(
            _encode_chats,
            batched=True,
            input_columns=["prompt", "response"],
            remove_columns=["prompt", "response"],
            num_proc=num_proc,
            new_fingerprint="gemma-3-chat-tokens",  # spares hashing the tokenizer: 10 s or more
        )
        data = data.filter(
            lambda input_ids: [len(ids) <= MAX_LENGTH for ids in input_ids],
            batched=True,
            input_columns=["input_ids"],
            num_proc=num_proc,
        )
        splits = {name: data.select(rows) for name, rows in _held_out(len(data), test_size).items()}
        stats = _stats(
            {name: split.num_rows for name, split in splits.items()},
            data["prompt_tokens"][:],
            data["answer_tokens"][:],
            data["text"][:],
            [label for split in splits.values() for label in split["category"][:]],
        )
    return Side(
        {name: split.select_columns(["input_ids", "labels"]) for name, split in splits.items()},
        stats,
        clock.seconds,
    )


def naive_side(path: Path, tokenizer: Tokenizer, test_size: float | None = None) -> Side:
    """The straightforward way: pandas reads the CSV; for each row (`iterrows`) a dict, the
    checks in plain Python, one `encode` per prompt and per answer; a seeded shuffle splits what
    is kept, and the statistics are pure Python."""
    clock = _Clock()
    with clock("processing"):
        frame = pd.read_csv(path, keep_default_na=False)
        first_time = _first_time()
        kept: list[tuple[list[int], list[int], str, str]] = []
        for _, row in frame.iterrows():
            record = {k: row[k] for k in ("prompt", "response", "category")}
            question, response = str(record["prompt"]), str(record["response"])
            if not first_time([question], [response])[0]:
                continue
            prompt = PROMPT_TEXT.format(question.strip())
            answer = ANSWER_TEXT.format(response.strip())
            prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
            answer_ids = tokenizer.encode(answer, add_special_tokens=False).ids
            if len(prompt_ids) + len(answer_ids) <= MAX_LENGTH:
                kept.append((prompt_ids, answer_ids, prompt + answer, str(record["category"])))
        splits = _held_out(len(kept), test_size)
        examples = {
            name: [
                (p + a, [IGNORE_INDEX] * len(p) + a[:-1] + [IGNORE_INDEX])
                for p, a, _, _ in (kept[i] for i in rows)
            ]
            for name, rows in splits.items()
        }
        stats = _stats(
            {name: len(rows) for name, rows in splits.items()},
            [len(k[0]) for k in kept],
            [len(k[1]) for k in kept],
            [k[2] for k in kept],
            [kept[i][3] for rows in splits.values() for i in rows],
        )
    return Side(examples, stats, clock.seconds)


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


def _stats(
    rows: dict[str, int],
    prompt_lengths: list[int],
    answer_lengths: list[int],
    texts: list[str],
    categories: list[str],
) -> dict[str, Any]:
    """The statistics of the kept rows (lengths and texts in their order, categories split by
    split, as TuneForge counts them), as `DatasetStats.model_dump()` has them."""
    labels = Counter(categories)
    top = labels.most_common(TOP_LABELS)
    return {
        "rows": rows,
        "prompt_tokens": _summary(prompt_lengths),
        "answer_tokens": _summary(answer_lengths),
        "total_tokens": _summary(
            [p + a for p, a in zip(prompt_lengths, answer_lengths, strict=True)]
        ),
        "turns": {2: len(texts)},
        "labels": {
            "column": "category",
            "distinct": len(labels),
            "top": [{"label": label, "count": count} for label, count in top],
            "other": len(texts) - sum(count for _, count in top),
        },
        "duplicates": {
            "exact": len(texts) - len(set(texts)),
            "normalized": len(texts) - len({_normalized(t) for t in texts}),
        },
        "pairs": None,  # conversations: no preference pairs, feedback or reference columns
        "feedback": None,
        "reference_columns": None,
    }


def id_rows(examples: Any) -> Iterator[tuple[list[int], list[int]]]:
    """A split's rows as (token ids, labels), whatever form the side keeps them in."""
    if hasattr(examples, "column_names"):  # a `datasets.Dataset`
        for batch in examples.iter(batch_size=1_000):
            yield from zip(batch["input_ids"], batch["labels"], strict=True)
        return
    for example in examples:
        yield (example.input_ids, example.labels) if isinstance(example, Example) else example


def assert_same(ours: Side, theirs: Side) -> None:
    """The same splits, the same token ids and labels row for row, the same statistics."""
    assert ours.examples.keys() == theirs.examples.keys(), "the splits differ"
    for name, split in ours.examples.items():
        for number, (mine, other) in enumerate(
            zip(id_rows(split), id_rows(theirs.examples[name]), strict=True)
        ):
            assert mine == other, f"{name} row {number}: the token ids or labels differ"
    mine_stats, other_stats = dict(ours.stats), dict(theirs.stats)
    for lengths in ("prompt_tokens", "answer_tokens", "total_tokens"):
        mine_stats[lengths], other_stats[lengths] = (
            dict(mine_stats[lengths]),
            dict(other_stats[lengths]),
        )
        assert math.isclose(mine_stats[lengths].pop("mean"), other_stats[lengths].pop("mean"))
    assert mine_stats == other_stats, "the statistics disagree"


def _load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--num-proc",
        type=int,
        default=os.cpu_count(),
        help="processes for the datasets side's map and length filter (default: one per CPU)",
    )
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    parser.add_argument("--profile", action="store_true", help="cProfile TuneForge's path")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    models_dir = args.models_dir or Settings().models_dir
    tokenizer = gemma_tokenizer(models_dir)
    fast = AutoTokenizer.from_pretrained(ensure_tokenizer_dir(models_dir))
    count_tokens(["Warm up the tokenizer."], tokenizer)
    tokenizer.encode("Warm up the tokenizer.")
    fast(["Warm up the tokenizer."])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        words = generate_csv(path, args.rows)
        size = path.stat().st_size
        path.read_bytes()  # every side reads it from the page cache
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(tuneforge_side, path, tokenizer, None, TEST_SIZE)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        loads = [_load_average()]
        ours = tuneforge_side(path, tokenizer, None, TEST_SIZE)
        loads.append(_load_average())
        theirs = datasets_side(path, fast, args.num_proc, Path(tmp) / "hf", TEST_SIZE)
        loads.append(_load_average())
        naive = naive_side(path, tokenizer, TEST_SIZE)
        loads.append(_load_average())
        assert_same(ours, theirs)
        assert_same(ours, naive)
    total = ours.stats["total_tokens"]
    print(
        f"{args.rows:,} rows, {size / 1e6:.1f} MB of CSV, {total['mean']:.0f} Gemma tokens per "
        f"row on average ({total['mean'] * total['count'] / words:.2f} tokens per word); kept "
        f"{', '.join(f'{n:,} {split}' for split, n in ours.stats['rows'].items())}"
    )
    setups = {
        "TuneForge": "processing job, then training's encode_records",
        "datasets": f"Dataset.map(batched=True), num_proc={args.num_proc}, fast tokenizer",
        "naive": "pandas iterrows, one encode per prompt and per answer",
    }
    for name, side in (("TuneForge", ours), ("datasets", theirs), ("naive", naive)):
        phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in side.seconds.items())
        print(
            f"{name:>10}: {side.total:6.1f} s {args.rows / side.total:8,.0f} rows/s  "
            f"({phases}; {setups[name]})"
        )
    print(
        f"load average (1 min) before and after each side: {' / '.join(loads)} "
        f"on {os.cpu_count()} CPUs"
    )
    print("Same rows, splits, token ids, labels and statistics on every side: yes")
    print(f"ratio against datasets.map: {theirs.total / ours.total:.2f}x (target >= 3)")
    print(f"ratio against naive: {naive.total / ours.total:.2f}x")
    print(
        "TuneForge's processing job alone (token counts, no ids): "
        f"{ours.seconds['processing']:.1f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
