"""Benchmark: LoRA fine-tuning of Gemma 3 270M, TuneForge's SFT recipe against TRL's SFTTrainer
with its defaults and TRL's SFTTrainer tuned for a CPU.

    python bench/train_throughput.py [--steps 10] [--batch-size 4] [--accumulation 2]
        [--examples 400] [--last 5] [--models-dir DIR | --model-path DIR] [--threads N]
        [--verbose]

The three sides train the real Gemma 3 270M (`tuneforge.models.loading.model_dir`) with the same
LoRA adapters (r=16, alpha 32, dropout 0, every linear layer), on the same generated chat data
(deterministic; prompts of 10-120 words, answers of 5-150 words, loss on the answers only), for
the same optimizer steps with the same examples in each step, in the same order:

* TuneForge (`ours`): `tuneforge.training.recipes.sft.train_sft` with its defaults (`precision:
  auto`: bf16 frozen base on a CPU with a bf16 matrix unit, else fp32; packing, LM head only
  where the loss is), no test split so nothing is evaluated.
* TRL's defaults (`trl`): `SFTTrainer` with TRL's defaults (fp32 weights under bf16 autocast,
  gradient checkpointing, right-padded batches, no packing). Only what makes it the same task is
  set: the LoRA config, steps, batch size and accumulation, the learning rate and its schedule
  (TuneForge's warmup + cosine, step for step, through `create_scheduler`: transformers' cosine
  is one step off), the same data order (`train_sampling_strategy="sequential"` over the rows in
  TuneForge's order), no eval or saving, logging every step, `use_cpu`.
* TRL tuned (`tuned`): the same, set as a knowledgeable CPU user would: fp32 without autocast,
  no gradient checkpointing, `padding_free=True` (each batch one row of its examples end to end,
  position ids restarting at 0 for each, which transformers turns into a block-diagonal mask for
  `sdpa` attention), `sdpa` attention, no pinned memory, no dataloader workers (TRL's default).
  TRL 1.16 already projects only the loss tokens through the output head. Not TRL's `packing`:
  it would regroup the data into `max_length` rows (best-fit decreasing), so the steps would
  hold other examples and other numbers of them, and the loss curves would not compare step for
  step; padding-free batches give a packed row's work for the very examples of each step.

Loss on answers only: TRL's `assistant_only_loss` needs a chat template with generation markers,
which Gemma's has not, so the baselines get a prompt/completion dataset (`completion_only_loss`):
the prompt is the conversation rendered up to `<start_of_turn>model\\n` (without `<bos>`, which
TRL's tokenizer call adds), the completion the answer up to its `<end_of_turn>`. With
`eos_token="<end_of_turn>"` TRL appends nothing more (by default it would append `<eos>`, which a
Gemma chat turn never ends with). TuneForge's rows also hold the newline after `<end_of_turn>`,
which carries no loss: the baselines' rows are TuneForge's but for that last token, with the same
labels (checked row by row).

Each side runs in its own child process (`--side ours|trl|tuned --json`), so the peak RSS of one
does not inflate another. Throughput is non-padding tokens / seconds in optimizer steps (model
loading and data preparation excluded): `trainer.train()` for TRL, `Outcome.train_seconds` for
TuneForge. The final loss is the mean of the last `--last` steps' losses.

Useful FLOP/s: the FLOPs the trained examples need at the least (`useful_flops`, the same for
every side) over a side's training seconds, as a share of this machine's fp32 matrix-product
peak, which each side measures in its own process before it trains (`matmul_peak`, with its
torch threads); the best measurement is the peak. When TuneForge trains in another precision
(bf16 with a bf16 matrix unit), it also measures that precision's peak and prints its share of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.conversation import Message, message
from tuneforge.models.chat_template import END_OF_TURN, prompt_and_answer
from tuneforge.training.schedule import Plan
from tuneforge.training.spec import SFTSpec

MODEL = "gemma-3-270m"
SEED = 1234
TARGET_RATIO = 4.0
TUNED_TARGET_RATIO = 2.0
FLOP_SHARE_TARGET = 0.40
LOSS_TOLERANCE = 0.05
#: The peak is measured on square matrices this large, the best of this many products.
PEAK_SIZE = 3072
PEAK_REPEATS = 5
WORD_LIST = """
time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government
number night point home water room mother area money story fact month lot right study book eye
job word business issue side kind head house service friend father power hour game line end
member law car city community name president team minute idea kid body information back parent
face others level office door health person art war history party result change morning reason
research girl guy moment air teacher force education foot boy age policy process music market
sense nation plan college interest death experience effect use class control care field
development role effort rate heart drug show leader light voice wife police mind price report
decision son view relationship town road arm difference value building action model season
society tax director position player record paper space ground form event official matter
center couple site project activity star table need court oil situation cost industry figure
street image phone data picture practice piece land product doctor wall patient worker news
test movie north love support technology step baby computer type attention film tree source
organization hair window evidence population truth song bread stone bright quiet early warm
"""
NAME_PARTS = "ba be bi bo da de di do ka ke ki ko la le li lo ma me mi mo na ne ni no ra re ri ro"
KINDS = "river village machine song festival mountain recipe ship library garden"
COLOUR_LIST = "red green blue yellow grey white black golden silver purple"
WORDS, SYLLABLES = WORD_LIST.split(), NAME_PARTS.split()
CATEGORIES, COLOURS = KINDS.split(), COLOUR_LIST.split()
QUESTIONS = (
    "What do we know about {name}?",
    "Describe {name} in your own words.",
    "Tell me about {name}.",
    "Summarise the note on {name}.",
)


# -- data ------------------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, low: int, high: int) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _prose(rng: np.random.Generator, pool: Sequence[str], words: int) -> str:
    """`words` words from `pool` in sentences of 6-14 words."""
    sentences, left = [], words
    while left > 0:
        n = min(left, int(rng.integers(6, 15)))
        picked = [pool[i] for i in rng.integers(0, len(pool), size=n)]
        sentences.append(" ".join(picked).capitalize() + ".")
        left -= n
    return " ".join(sentences)


def generate_records(count: int, seed: int = SEED) -> list[dict[str, list[Message]]]:
    """Processed-dataset rows: a note about a made-up thing (10-120 words) and a question, and an
    answer (5-150 words) that names it and goes on in words of the note, so there is something
    to learn (the format, and copying)."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        name = "".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), 3)).capitalize()
        category = CATEGORIES[rng.integers(len(CATEGORIES))]
        colour = COLOURS[rng.integers(len(COLOURS))]
        note = _prose(rng, WORDS, _log_uniform(rng, 10, 120))
        question = QUESTIONS[rng.integers(len(QUESTIONS))].format(name=name)
        answer = f"{name} is a {colour} {category}."
        extra = _log_uniform(rng, 5, 150) - 5
        if extra > 0:
            answer += " " + _prose(rng, note.lower().replace(".", "").split(), extra)
        prompt = f"A note about {name}, a {colour} {category}: {note}\n\n{question}"
        records.append({"messages": [message("user", prompt), message("assistant", answer)]})
    return records


def bench_spec(args: argparse.Namespace) -> SFTSpec:
    """TuneForge's spec: its defaults but for the run's size (the LoRA values are its defaults,
    spelled out because the baseline copies them)."""
    return SFTSpec(
        base_model=MODEL,
        dataset_id="bench",
        max_steps=args.steps,
        batch_size=args.batch_size,
        gradient_accumulation=args.accumulation,
        eval_every=0,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        lora_target_modules=["all-linear"],
    )


def step_order(plan: Plan) -> list[int]:
    """The example indices in the order TuneForge's steps visit them, micro-batch by micro-batch
    (each a full batch, so that TRL's sequential batches are the same ones)."""
    order = []
    for step in range(1, plan.total_steps + 1):
        for batch in plan.step_batches(step):
            if len(batch) != plan.spec.batch_size:
                raise SystemExit(
                    f"A micro-batch of step {step} has {len(batch)} examples: use a number of "
                    f"examples that is a multiple of the batch size ({plan.spec.batch_size})."
                )
            order += batch
    return order


# -- useful work and this machine's peak -----------------------------------------------------


def useful_flops(lengths: Sequence[int], loss_tokens: int) -> float:
    """The FLOPs that training on examples of `lengths` tokens needs at the least, `loss_tokens`
    of them carrying loss: `tuneforge.training.estimate.throughput.flops_per_token` for LoRA r=16
    on every linear layer of the frozen base, forward and backward, without checkpointing; each
    example attending causally to itself only (a token at position i to i + 1 keys), and the
    output head on the loss tokens only. Padding, attention across examples, the head on tokens
    without loss and recomputed forwards are work a side may do, but not useful work."""
    from tuneforge.models.catalog import catalog
    from tuneforge.training.estimate.architecture import lora_parameters
    from tuneforge.training.estimate.throughput import flops_per_token

    entry = catalog().get(MODEL)
    assert entry is not None
    arch = entry.architecture
    tokens = sum(lengths)
    context = sum(n * (n + 1) / 2 for n in lengths) / tokens  # keys per token, on average
    trainable = lora_parameters(arch, 16, ["all-linear"])
    per_token = flops_per_token(arch, "lora", trainable, loss_tokens / tokens, context, False)
    return tokens * per_token


def matmul_peak(
    precision: str = "fp32", size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS
) -> tuple[float, float]:
    """This process's best matrix-product rate: `torch.mm` of two `size` x `size` matrices in
    `precision` (fp32 or bf16) with the torch threads the side trains with, the best of `repeats`
    after a warm-up; in FLOP per second of wall time, and per second of process CPU time (all
    threads: what a core does while it runs the product, even when other work shares it)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    generator = torch.Generator().manual_seed(SEED)
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)
    wall = cpu = math.inf
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        torch.mm(a, b, out=out)
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - cpu_started)
    return 2 * size**3 / wall, 2 * size**3 / cpu


# -- the two sides (each in its own process) -------------------------------------------------


class CollectingReporter:
    """A `Reporter` that keeps every step's metrics."""

    def __init__(self) -> None:
        self.steps: dict[int, dict[str, float]] = {}
        self.cpu: dict[int, float] = {}  # process CPU seconds when each step reported
        self.messages: list[str] = []

    def progress(self, fraction: float, message: str | None = None) -> None:
        pass

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.steps.setdefault(step, {}).update(values)
        if "loss" in values:
            self.cpu[step] = time.process_time()

    def samples(self, step: int, items: list[dict[str, str]]) -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        self.messages.append(message)
        print(f"{level}: {message}", file=sys.stderr, flush=True)

    @property
    def cancel_requested(self) -> bool:
        return False


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_ours(args: argparse.Namespace, model_path: Path) -> dict[str, Any]:
    from tokenizers import Tokenizer

    from tuneforge.training.components.tokenize import IGNORE_INDEX
    from tuneforge.training.recipes.sft import encode_all, train_sft

    spec = bench_spec(args)
    records = generate_records(args.examples)
    reporter = CollectingReporter()
    peak = {"fp32": matmul_peak()}
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train_sft(spec, model_path, records, [], reporter, Path(tmp))
    if outcome.precision != "fp32":  # its own peak too (a bf16 matrix unit's, say)
        peak[outcome.precision] = matmul_peak(outcome.precision)
    examples = encode_all(records, Tokenizer.from_file(str(model_path / "tokenizer.json")), spec)
    plan = Plan(spec, len(examples))
    steps = [
        [i for batch in plan.step_batches(step) for i in batch]
        for step in range(1, outcome.steps + 1)
    ]
    step_tokens = [sum(len(examples[i].input_ids) for i in step) for step in steps]
    if sum(step_tokens) != outcome.tokens:
        raise RuntimeError(f"{outcome.tokens} tokens reported, {sum(step_tokens)} planned")
    return {
        "tokens": outcome.tokens,
        "seconds": outcome.train_seconds,
        "step_seconds": outcome.step_seconds,
        "step_tokens": step_tokens,
        "losses": [reporter.steps[s]["loss"] for s in sorted(reporter.steps) if s > 0],
        "cpu_after_first": reporter.cpu[outcome.steps] - reporter.cpu[1],
        "peak_rss_bytes": outcome.peak_rss_bytes,
        "median_tokens_per_second": outcome.tokens_per_second,
        "peak_flops": peak,
        # each example without its final newline (no loss, and no token after it to see it)
        "step_useful_flops": [
            useful_flops(
                [len(examples[i].input_ids) - 1 for i in step],
                sum(x != IGNORE_INDEX for i in step for x in examples[i].labels),
            )
            for step in steps
        ],
        "setup": f"{outcome.precision} on {outcome.device}, packing={spec.packing}",
    }


def trl_row(record: Mapping[str, Any]) -> dict[str, str]:
    """The record as TRL's prompt/completion strings: the completion ends at `<end_of_turn>`, and
    the prompt has no `<bos>` (TRL tokenizes plain strings with the tokenizer's special tokens,
    which add it)."""
    prompt, answer = prompt_and_answer(record["messages"], bos=False)
    return {"prompt": prompt, "completion": answer[: answer.rindex(END_OF_TURN) + len(END_OF_TURN)]}


def _same_rows(
    dataset: Any, records: Sequence[Mapping[str, Any]], order: Sequence[int], model_path: Path
) -> bool:
    """Whether each of TRL's tokenized rows is TuneForge's example without its last token (the
    newline after `<end_of_turn>`, which carries no loss), with the same labels."""
    from tokenizers import Tokenizer

    from tuneforge.training.components.tokenize import IGNORE_INDEX, encode_record

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    newline = tokenizer.token_to_id("\n")
    for row, index in zip(dataset, order, strict=True):
        ours = encode_record(records[index], tokenizer, 1024, assistant_only=True)
        if ours is None or ours.input_ids[-1] != newline or ours.labels[-1] != IGNORE_INDEX:
            return False
        if row["input_ids"] != ours.input_ids[:-1] or row["labels"] != ours.labels[:-1]:
            return False
    return True


def with_plan_schedule(trainer_class: type, plan: Plan) -> type:
    """`trainer_class` (a transformers `Trainer`) with TuneForge's learning rate for each step
    (linear warmup, then the spec's schedule), through `create_scheduler`: transformers' cosine
    is one step off."""
    from torch.optim.lr_scheduler import LambdaLR

    class PlanSchedule(trainer_class):  # type: ignore[misc,valid-type]
        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            if self.lr_scheduler is None:
                self.lr_scheduler = LambdaLR(
                    optimizer or self.optimizer,
                    lambda i: plan.learning_rate(i + 1) / plan.spec.learning_rate,
                )
                self._created_lr_scheduler = True
            return self.lr_scheduler

    return PlanSchedule


def step_clock() -> Any:
    """A `TrainerCallback` that keeps the wall and process CPU time at the start of training
    and at the end of every optimizer step (`marks`, `cpu`)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.marks: list[float] = []
            self.cpu: list[float] = []

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self.marks, self.cpu = [time.perf_counter()], [time.process_time()]

        def on_step_end(self, *_: Any, **__: Any) -> None:
            self.marks.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepClock()


def run_trl(args: argparse.Namespace, model_path: Path, tuned: bool = False) -> dict[str, Any]:
    """TRL's `SFTTrainer` on the bench's task: with TRL's defaults, or `tuned` as a knowledgeable
    CPU user sets it (fp32 without autocast, no gradient checkpointing, padding-free batches,
    `sdpa` attention, no pinned memory; see the module docstring)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    spec = bench_spec(args)
    records = generate_records(args.examples)
    plan = Plan(spec, len(records))
    order = step_order(plan)
    dataset = Dataset.from_list([trl_row(records[i]) for i in order])
    peak = matmul_peak()

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    loading: dict[str, Any] = {"attn_implementation": "sdpa"} if tuned else {}
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, **loading)
    # Padding-free batches are one row of the batch's examples end to end, the position ids
    # restarting at 0 for each: the same examples per step as padded ones, none of the padding.
    # TRL refuses them with a `max_length` it cannot enforce without packing; every row here is
    # far shorter than TuneForge's 1024 (`_same_rows` checks that none was cut).
    tuning: dict[str, Any] = (
        {
            "bf16": False,
            "gradient_checkpointing": False,
            "padding_free": True,
            "max_length": None,
            "dataloader_pin_memory": False,
        }
        if tuned
        else {}
    )
    clock = step_clock()
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            max_steps=spec.max_steps,
            per_device_train_batch_size=spec.batch_size,
            gradient_accumulation_steps=spec.gradient_accumulation,
            learning_rate=spec.learning_rate,
            max_grad_norm=spec.max_grad_norm,
            weight_decay=spec.weight_decay,
            seed=spec.seed,
            completion_only_loss=True,
            eos_token=END_OF_TURN,
            train_sampling_strategy="sequential",
            logging_steps=1,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            **tuning,
        )
        trainer = with_plan_schedule(SFTTrainer, plan)(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=LoraConfig(
                r=spec.lora_r,
                lora_alpha=spec.lora_alpha,
                lora_dropout=spec.lora_dropout,
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            ),
            callbacks=[clock],
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    rows = trainer.train_dataset
    lengths = [len(ids) for ids in rows["input_ids"]]
    per_step = spec.effective_batch
    step_tokens = [sum(lengths[i : i + per_step]) for i in range(0, len(lengths), per_step)]
    history = trainer.state.log_history
    logged_tokens = max(int(entry.get("num_tokens", 0)) for entry in history)
    if logged_tokens != sum(lengths):
        raise RuntimeError(f"TRL counted {logged_tokens} tokens, the dataset holds {sum(lengths)}")
    return {
        "tokens": sum(lengths),
        "seconds": seconds,
        "step_seconds": [b - a for a, b in zip(clock.marks, clock.marks[1:], strict=False)],
        "step_tokens": step_tokens,
        "losses": [entry["loss"] for entry in history if "loss" in entry],
        "cpu_after_first": clock.cpu[-1] - clock.cpu[1],
        "peak_rss_bytes": _peak_rss(),
        "peak_flops": {"fp32": peak},
        "step_useful_flops": [
            useful_flops(
                lengths[i : i + per_step],
                sum(x != -100 for labels in rows["labels"][i : i + per_step] for x in labels),
            )
            for i in range(0, len(lengths), per_step)
        ],
        "same_rows": _same_rows(rows, records, order, model_path),
        "learning_rates": [entry["learning_rate"] for entry in history if "learning_rate" in entry],
        "setup": (
            f"fp32 weights, bf16 autocast={config.bf16}, gradient checkpointing="
            f"{config.gradient_checkpointing}, padding_free={config.padding_free}, "
            f"packing={config.packing}, attention {model.config._attn_implementation}"
        ),
    }


def run_trl_tuned(args: argparse.Namespace, model_path: Path) -> dict[str, Any]:
    return run_trl(args, model_path, tuned=True)


# -- the parent: both sides, side by side ----------------------------------------------------


def _child(side: str, args: argparse.Namespace, model_path: Path) -> dict[str, Any] | str:
    """Run one side in a child process: its result, or why it failed."""
    options = ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    options += ["--accumulation", str(args.accumulation), "--examples", str(args.examples)]
    return run_child(__file__, side, args, model_path, options)


def run_child(
    script: str, side: str, args: argparse.Namespace, model_path: Path, options: list[str]
) -> dict[str, Any] | str:
    """Run one side of the benchmark `script` in a child process with its `options`: the side's
    result, or why it failed."""
    command = [
        sys.executable,
        script,
        "--side",
        side,
        "--json",
        "--model-path",
        str(model_path),
        *options,
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=None if args.verbose else subprocess.PIPE, text=True
    )
    lines = done.stdout.strip().splitlines()
    print(f"  {side}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or "").strip().splitlines()[-15:])
        return f"exit code {done.returncode}\n{tail}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _rate(result: Mapping[str, Any], skip_first: bool = False) -> float:
    if skip_first:
        seconds = sum(result["step_seconds"][1:])
        return sum(result["step_tokens"][1:]) / seconds if seconds else float("nan")
    return float(result["tokens"] / result["seconds"])


def _cpu_rate(result: Mapping[str, Any]) -> float:
    """Tokens per second of process CPU time (all threads) after the first step: less sensitive
    than wall time to other work on the machine."""
    cpu = result["cpu_after_first"]
    return sum(result["step_tokens"][1:]) / cpu if cpu else float("nan")


def _final_loss(result: Mapping[str, Any], last: int) -> float:
    return statistics.fmean(result["losses"][-last:])


NAMES = {"ours": "TuneForge", "trl": "TRL", "tuned": "TRL tuned"}
#: Each baseline's target ratio: TRL's defaults, and TRL tuned for this CPU (issue 17).
TARGETS = {"trl": TARGET_RATIO, "tuned": TUNED_TARGET_RATIO}


def report(results: dict[str, dict[str, Any] | str], args: argparse.Namespace) -> None:
    print(
        f"Gemma 3 270M + LoRA r=16 (alpha 32, every linear layer), {args.steps} steps of "
        f"{args.batch_size} x {args.accumulation} examples ({args.examples} generated, "
        f"{args.steps * args.batch_size * args.accumulation} trained on)"
        + (f", {args.threads} torch threads" if args.threads else "")
    )
    ok = {side: r for side, r in results.items() if isinstance(r, dict)}
    for side, result in results.items():
        if isinstance(result, str):
            print(f"{NAMES[side]} failed: {result}")
    print(
        f"{'':>10} {'tokens':>7} {'train s':>8} {'tokens/s':>9} {'after step 1':>13} "
        f"{'peak RSS':>9} {'loss step 1':>12} {f'loss last {args.last}':>12}"
    )
    for side, r in ok.items():
        print(
            f"{NAMES[side]:>10} {r['tokens']:>7,} {r['seconds']:>8.1f} {_rate(r):>9.1f} "
            f"{_rate(r, skip_first=True):>13.1f} {r['peak_rss_bytes'] / 2**30:>7.2f} GB "
            f"{r['losses'][0]:>12.4f} {_final_loss(r, args.last):>12.4f}"
        )
    for side, r in ok.items():
        print(f"{NAMES[side]:>10}: {r['setup']}")
    loads = [x for r in ok.values() for x in r["load"]]
    print(
        "load average (1 min) at the start and end of each side: "
        + ", ".join(f"{NAMES[s]} {r['load'][0]:.1f} / {r['load'][1]:.1f}" for s, r in ok.items())
        + f" on {os.cpu_count()} CPUs"
        + ("" if max(loads) <= (os.cpu_count() or 1) + 0.5 else ": BUSY, the figures are noisy")
    )
    for side in ("trl", "tuned"):
        if side in ok:
            print(
                f"Same tokens and labels ({NAMES[side]}'s rows = TuneForge's without the final "
                f"newline, which carries no loss): {'yes' if ok[side]['same_rows'] else 'NO'}"
            )
    ours = ok.get("ours")
    for side, target in TARGETS.items():
        if ours is None or side not in ok:
            print(f"ratio to {NAMES[side]}: n/a (target >= {target:g})")
            continue
        base = ok[side]
        a, b = _final_loss(ours, args.last), _final_loss(base, args.last)
        gap = abs(a - b) / b
        print(
            f"ratio to {NAMES[side]}: {_rate(ours) / _rate(base):.2f} (target >= {target:g}); "
            f"{_rate(ours, skip_first=True) / _rate(base, skip_first=True):.2f} after the first "
            f"step; per CPU second after step 1 {_cpu_rate(ours):.1f} vs {_cpu_rate(base):.1f} "
            f"tokens, {_cpu_rate(ours) / _cpu_rate(base):.2f}; peak RSS "
            f"{ours['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}x"
        )
        print(
            f"  loss parity: {'yes' if gap <= LOSS_TOLERANCE else 'no'} (mean of the last "
            f"{args.last} steps {a:.4f} vs {b:.4f}, {gap:.1%} apart; tolerance "
            f"{LOSS_TOLERANCE:.0%})"
        )
    if ok:
        report_flops(ok)


def report_flops(ok: Mapping[str, Mapping[str, Any]]) -> None:
    """Useful FLOP/s of each side as a share of this machine's fp32 matrix-product peak: the best
    `matmul_peak` any side measured (each measures its own before it trains, with its threads),
    per second of wall time over the whole training, and per second of CPU time after the first
    step (less sensitive to other work on the machine); and the share of its own precision's
    peak when TuneForge trained in another (bf16 with a bf16 matrix unit)."""
    wall = max(r["peak_flops"]["fp32"][0] for r in ok.values())
    cpu = max(r["peak_flops"]["fp32"][1] for r in ok.values())
    work = {round(sum(r["step_useful_flops"])) for r in ok.values()}
    useful = max(work)
    tokens = min(r["tokens"] for r in ok.values())  # TRL's rows: TuneForge's without a newline
    print(
        f"useful work: {useful / 1e9:,.1f} GFLOP, {useful / tokens / 1e6:,.0f} MFLOP a token "
        "(forward and backward of the frozen base with LoRA, attention within each example, the "
        "head on loss tokens only: tuneforge.training.estimate.throughput.flops_per_token)"
        + ("" if len(work) == 1 else f"; the sides DISAGREE: {sorted(work)}")
    )
    print(
        f"fp32 matrix-product peak: {wall / 1e9:.1f} GFLOP/s, {cpu / 1e9:.1f} GFLOP per CPU "
        f"second (torch.mm of {PEAK_SIZE}x{PEAK_SIZE} fp32, best of {PEAK_REPEATS}; measured by "
        "each side before training: "
        + ", ".join(f"{NAMES[s]} {r['peak_flops']['fp32'][0] / 1e9:.1f}" for s, r in ok.items())
        + ")"
    )
    for side, r in ok.items():
        rate = sum(r["step_useful_flops"]) / r["seconds"]
        per_cpu = sum(r["step_useful_flops"][1:]) / r["cpu_after_first"]
        print(
            f"{NAMES[side]:>10}: {rate / 1e9:6.1f} GFLOP/s useful, {rate / wall:.0%} of the fp32 "
            f"peak; per CPU second after step 1 {per_cpu / 1e9:.1f} GFLOP, {per_cpu / cpu:.0%} "
            "of the peak's" + (f" (target >= {FLOP_SHARE_TARGET:.0%})" if side == "ours" else "")
        )
        for precision, (own_wall, own_cpu) in r["peak_flops"].items():
            if precision != "fp32":
                print(
                    f"{'':>10}  it trained in {precision}: {precision} matrix-product peak "
                    f"{own_wall / 1e9:.1f} GFLOP/s, {own_cpu / 1e9:.1f} per CPU second; "
                    f"{rate / own_wall:.0%} and {per_cpu / own_cpu:.0%} of it"
                )


def _model_path(args: argparse.Namespace) -> Path:
    if args.model_path is not None:
        return Path(args.model_path)
    from tuneforge.models.catalog import catalog
    from tuneforge.models.loading import model_dir
    from tuneforge.settings import Settings

    entry = catalog().get(MODEL)
    assert entry is not None
    return Path(model_dir(entry, args.models_dir or Settings().models_dir))


def add_side_arguments(
    parser: argparse.ArgumentParser, sides: Sequence[str] = ("ours", "trl")
) -> None:
    """The options every benchmark of TuneForge against baselines takes: the model, threads,
    and one of its `sides` alone."""
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    parser.add_argument("--model-path", type=Path, help="a converted model directory to use")
    parser.add_argument("--threads", type=int, help="torch threads per side (default: torch's)")
    parser.add_argument("--verbose", action="store_true", help="show the children's logs")
    parser.add_argument("--side", choices=list(sides), help="run one side only")
    parser.add_argument("--json", action="store_true", help="with --side: print JSON")


Side = Callable[[argparse.Namespace, Path], dict[str, Any]]
Child = Callable[[str, argparse.Namespace, Path], dict[str, Any] | str]
Report = Callable[[dict[str, dict[str, Any] | str], argparse.Namespace], None]


def run_sides(
    args: argparse.Namespace, sides: dict[str, Side], child: Child, report: Report
) -> None:
    """With `--side`: run that side here and print its result (JSON on stdout); else run each
    side in a child process, one after the other, and report both."""
    if args.side:
        model_path = _model_path(args)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        load = os.getloadavg()[0]
        with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs: keep stdout JSON
            result = sides[args.side](args, model_path)
        result["load"] = [load, os.getloadavg()[0]]
        print(json.dumps(result, indent=None if args.json else 2))
        return
    try:
        model_path = _model_path(args)
        print(f"model: {model_path}", file=sys.stderr, flush=True)
        results = {side: child(side, args, model_path) for side in sides}
        report(results, args)
    except Exception as exc:  # the benchmark reports; it does not fail the caller
        print(f"benchmark failed: {type(exc).__name__}: {exc}")
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per forward pass")
    parser.add_argument("--accumulation", type=int, default=2, help="forward passes per step")
    parser.add_argument("--examples", type=int, default=400, help="generated examples")
    parser.add_argument("--last", type=int, default=5, help="steps the final loss averages")
    sides: dict[str, Side] = {"ours": run_ours, "trl": run_trl, "tuned": run_trl_tuned}
    add_side_arguments(parser, list(sides))
    run_sides(parser.parse_args(argv), sides, _child, report)


if __name__ == "__main__":
    main(sys.argv[1:])
