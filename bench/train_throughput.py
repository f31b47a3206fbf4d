"""Benchmark: LoRA fine-tuning of Gemma 3 270M, TuneForge's SFT recipe against TRL's SFTTrainer.

    python bench/train_throughput.py [--steps 10] [--batch-size 4] [--accumulation 2]
        [--examples 400] [--last 5] [--models-dir DIR | --model-path DIR] [--verbose]

Both sides train the real Gemma 3 270M (`tuneforge.models.loading.model_dir`) with the same LoRA
adapters (r=16, alpha 32, dropout 0, every linear layer), on the same generated chat data
(deterministic; prompts of 10-120 words, answers of 5-150 words, loss on the answers only), for
the same optimizer steps with the same examples in each step, in the same order:

* TuneForge: `tuneforge.training.recipes.sft.train_sft` with its defaults (bf16 frozen base,
  packing, LM head only where the loss is), no test split so nothing is evaluated.
* Baseline: TRL's `SFTTrainer` with TRL's defaults (fp32 weights under bf16 autocast, gradient
  checkpointing, right-padded batches, no packing). Only what makes it the same task is set:
  the LoRA config, steps, batch size and accumulation, the learning rate and its schedule
  (TuneForge's warmup + cosine, step for step, through `create_scheduler`: transformers' cosine
  is one step off), the same data order (`train_sampling_strategy="sequential"` over the rows in
  TuneForge's order), no eval or saving, logging every step, `use_cpu`.

Loss on answers only: TRL's `assistant_only_loss` needs a chat template with generation markers,
which Gemma's has not, so the baseline gets a prompt/completion dataset (`completion_only_loss`):
the prompt is the conversation rendered up to `<start_of_turn>model\\n` (without `<bos>`, which
TRL's tokenizer call adds), the completion the answer up to its `<end_of_turn>`. With
`eos_token="<end_of_turn>"` TRL appends nothing more (by default it would append `<eos>`, which a
Gemma chat turn never ends with). TuneForge's rows also hold the newline after `<end_of_turn>`,
which carries no loss: the baseline's rows are TuneForge's but for that last token, with the same
labels (checked row by row).

Each side runs in its own child process (`--side ours|trl --json`), so the peak RSS of one does
not inflate the other. Throughput is non-padding tokens / seconds in optimizer steps (model
loading and data preparation excluded): `trainer.train()` for TRL, `Outcome.train_seconds` for
TuneForge. The final loss is the mean of the last `--last` steps' losses.
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
LOSS_TOLERANCE = 0.05
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

    from tuneforge.training.recipes.sft import encode_all, train_sft

    spec = bench_spec(args)
    records = generate_records(args.examples)
    reporter = CollectingReporter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train_sft(spec, model_path, records, [], reporter, Path(tmp))
    examples = encode_all(records, Tokenizer.from_file(str(model_path / "tokenizer.json")), spec)
    plan = Plan(spec, len(examples))
    step_tokens = [
        sum(len(examples[i].input_ids) for batch in plan.step_batches(step) for i in batch)
        for step in range(1, outcome.steps + 1)
    ]
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


def run_trl(args: argparse.Namespace, model_path: Path) -> dict[str, Any]:
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

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)  # TRL's default
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
        "same_rows": _same_rows(rows, records, order, model_path),
        "learning_rates": [entry["learning_rate"] for entry in history if "learning_rate" in entry],
        "setup": (
            f"fp32 weights, bf16={config.bf16}, gradient checkpointing="
            f"{config.gradient_checkpointing}, padding_free={config.padding_free}, "
            f"packing={config.packing}"
        ),
    }


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


def report(results: dict[str, dict[str, Any] | str], args: argparse.Namespace) -> None:
    names = {"ours": "TuneForge", "trl": "TRL"}
    print(
        f"Gemma 3 270M + LoRA r=16 (alpha 32, every linear layer), {args.steps} steps of "
        f"{args.batch_size} x {args.accumulation} examples ({args.examples} generated, "
        f"{args.steps * args.batch_size * args.accumulation} trained on)"
        + (f", {args.threads} torch threads" if args.threads else "")
    )
    ok = {side: r for side, r in results.items() if isinstance(r, dict)}
    for side, result in results.items():
        if isinstance(result, str):
            print(f"{names[side]} failed: {result}")
    print(
        f"{'':>10} {'tokens':>7} {'train s':>8} {'tokens/s':>9} {'after step 1':>13} "
        f"{'peak RSS':>9} {'loss step 1':>12} {f'loss last {args.last}':>12}"
    )
    for side, r in ok.items():
        print(
            f"{names[side]:>10} {r['tokens']:>7,} {r['seconds']:>8.1f} {_rate(r):>9.1f} "
            f"{_rate(r, skip_first=True):>13.1f} {r['peak_rss_bytes'] / 2**30:>7.2f} GB "
            f"{r['losses'][0]:>12.4f} {_final_loss(r, args.last):>12.4f}"
        )
    for side, r in ok.items():
        print(f"{names[side]:>10}: {r['setup']}")
    loads = [x for r in ok.values() for x in r["load"]]
    print(
        "load average (1 min) at the start and end of each side: "
        + ", ".join(f"{names[s]} {r['load'][0]:.1f} / {r['load'][1]:.1f}" for s, r in ok.items())
        + f" on {os.cpu_count()} CPUs"
        + ("" if max(loads) <= (os.cpu_count() or 1) + 0.5 else ": BUSY, the figures are noisy")
    )
    if "trl" in ok:
        same = "yes" if ok["trl"]["same_rows"] else "NO"
        print(
            f"Same tokens and labels (TRL's rows = TuneForge's without the final newline, "
            f"which carries no loss): {same}"
        )
    if len(ok) < 2:
        print(f"ratio n/a (target >= {TARGET_RATIO:g})")
        print("loss parity: n/a")
        return
    ours, trl = ok["ours"], ok["trl"]
    ratio = _rate(ours) / _rate(trl)
    after = _rate(ours, skip_first=True) / _rate(trl, skip_first=True)
    print(f"ratio {ratio:.2f} (target >= {TARGET_RATIO:g}); {after:.2f} after the first step")
    print(
        f"per CPU second after step 1: {_cpu_rate(ours):.1f} vs {_cpu_rate(trl):.1f} tokens, "
        f"ratio {_cpu_rate(ours) / _cpu_rate(trl):.2f}"
    )
    print(f"peak RSS: TuneForge uses {ours['peak_rss_bytes'] / trl['peak_rss_bytes']:.2f}x TRL's")
    a, b = _final_loss(ours, args.last), _final_loss(trl, args.last)
    gap = abs(a - b) / b
    print(
        f"loss parity: {'yes' if gap <= LOSS_TOLERANCE else 'no'} (mean of the last "
        f"{args.last} steps {a:.4f} vs {b:.4f}, {gap:.1%} apart; tolerance "
        f"{LOSS_TOLERANCE:.0%})"
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


def add_side_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every two-sided benchmark takes: the model, threads, and one side alone."""
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    parser.add_argument("--model-path", type=Path, help="a converted model directory to use")
    parser.add_argument("--threads", type=int, help="torch threads per side (default: torch's)")
    parser.add_argument("--verbose", action="store_true", help="show the children's logs")
    parser.add_argument("--side", choices=["ours", "trl"], help="run one side only")
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
    add_side_arguments(parser)
    run_sides(parser.parse_args(argv), {"ours": run_ours, "trl": run_trl}, _child, report)


if __name__ == "__main__":
    main(sys.argv[1:])
