"""Benchmark: DPO of Gemma 3 270M, TuneForge's dpo recipe against TRL's DPOTrainer.

    python bench/preference_throughput.py [--steps 8] [--batch-size 4] [--accumulation 2]
        [--pairs 200] [--trl-batch-size 1] [--trl-precision auto|fp32|bf16]
        [--trl-precompute] [--models-dir DIR | --model-path DIR] [--threads N] [--verbose]

Both sides train the real Gemma 3 270M (`tuneforge.models.loading.model_dir`) with the same LoRA
adapters (r=16, alpha 32, dropout 0, every linear layer; the reference is the base with the
adapters switched off) on the same generated preference pairs, for the same optimizer steps with
the same pairs in each step, in the same order, with the same beta, sigmoid loss, learning rate
and schedule (TuneForge's warmup + cosine, step for step) and the same max length:

* TuneForge: `tuneforge.training.recipes.dpo` with its defaults, no test split.
* Baseline: TRL's `DPOTrainer` as a knowledgeable CPU user sets it up: fp32 weights, no gradient
  checkpointing (TRL turns it on by default), bf16 autocast only on a CPU with a bf16 matrix unit
  (AMX; `--trl-precision`), one pair per forward pass with accumulation (`--trl-batch-size`:
  TRL pads a batch's chosen and rejected rows to the longest, and on a CPU the padding costs
  more than bigger matrix products save), no eval or saving, logging every step, `use_cpu`.
  `--trl-precompute` has TRL compute the reference log-probs for the whole set before training
  (`precompute_ref_log_probs`); that pass counts as training time, since the recipe does the same
  reference passes inside its steps.

The pairs: each prompt is a note about a made-up thing and a question on it (the SFT bench's
`generate_records`); the chosen answer is that record's answer, the rejected one another record's
answer about the same name (wrong colour, kind and words), so both sides have the SFT bench's
length spread (prompts of 10-120 words, answers of 5-150).

Throughput counts each pair's prompt, chosen and rejected tokens once (no padding, the prompt not
twice) over the seconds in optimizer steps (model loading and data preparation excluded), the
same way for both sides. Each side runs in its own child process (`--side ours|trl --json`).
Loss parity: a DPO run starts at log 2 (the adapters are zero, so policy and reference agree and
every margin is 0); both sides must start there, and the mean loss of steps 2 to `--last` + 1
must agree within `LOSS_TOLERANCE` of the loss's fall from log 2 (see `loss_parity`).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from train_throughput import (  # the SFT bench, beside this file: its data, reporter and model
    CollectingReporter,
    _peak_rss,
    add_side_arguments,
    generate_records,
    run_child,
    run_sides,
    step_order,
)

from tuneforge.data.conversation import message, text_of
from tuneforge.models.chat_template import END_OF_TURN, render
from tuneforge.training.schedule import Plan

MODEL = "gemma-3-270m"
SEED = 4321
TARGET_RATIO = 1.5
#: The first steps' losses agree when their mean fall from log 2 differs by at most this share.
LOSS_TOLERANCE = 0.25
#: How far from log 2 the first step's loss may be (bf16 sums of the policy and reference).
START_TOLERANCE = 0.005
LOG_2 = math.log(2)


# -- data ------------------------------------------------------------------------------------


def generate_pairs(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """Processed preference rows: the SFT bench's prompt and answer as the chosen side, and
    the next record's answer, about this record's name, as the rejected side."""
    records = generate_records(count, seed)
    answers = [text_of(record["messages"][1]) for record in records]
    pairs = []
    for index, record in enumerate(records):
        prompt, chosen = record["messages"]
        other = answers[(index + 1) % count]
        name, other_name = answers[index].split(" ", 1)[0], other.split(" ", 1)[0]
        rejected = message("assistant", other.replace(other_name, name))
        pairs.append({"prompt": [prompt], "chosen": [chosen], "rejected": [rejected]})
    return pairs


def trl_row(pair: Mapping[str, Any]) -> dict[str, str]:
    """The pair as TRL's plain-text prompt, chosen and rejected: the prompt rendered up to
    `<start_of_turn>model\\n` without `<bos>` (TRL's tokenizer call adds it), each answer up to
    its `<end_of_turn>` (TRL appends the tokenizer's end token, set to `<end_of_turn>`, when
    an answer lacks it)."""
    return {
        "prompt": render(pair["prompt"], add_generation_prompt=True, bos=False),
        "chosen": text_of(pair["chosen"][0]) + END_OF_TURN,
        "rejected": text_of(pair["rejected"][0]) + END_OF_TURN,
    }


def bench_spec(args: argparse.Namespace) -> Any:
    """TuneForge's spec: its defaults but for the run's size (the LoRA values are its defaults,
    spelled out because the baseline copies them)."""
    from tuneforge.training.spec import DPOSpec

    return DPOSpec(
        base_model=MODEL,
        dataset_id="bench",
        max_steps=args.steps,
        batch_size=args.batch_size,
        gradient_accumulation=args.accumulation,
        eval_every=0,
        sample_prompts=[],
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        lora_target_modules=["all-linear"],
    )


def pair_count(args: argparse.Namespace) -> int:
    """One epoch: each side computes the reference log-probs of every pair once, so the data is
    exactly the pairs the steps train on."""
    return int(args.steps * args.batch_size * args.accumulation)


def pair_tokens(pairs: Sequence[Mapping[str, Any]], model_path: Path, max_length: int) -> list[int]:
    """Each pair's prompt, chosen and rejected tokens as TuneForge encodes them (the prompt
    once)."""
    from tokenizers import Tokenizer

    from tuneforge.training.components.completions import encode_pair

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    counts = []
    for record in pairs:
        pair = encode_pair(record, tokenizer, max_length)
        counts.append(pair.chosen.tokens + len(pair.rejected.answer_ids))
    return counts


# -- the two sides (each in its own process) -------------------------------------------------


def run_ours(args: argparse.Namespace, model_path: Path) -> dict[str, Any]:
    from tuneforge.training.recipes.dpo import train_dpo

    spec = bench_spec(args)
    pairs = generate_pairs(pair_count(args))
    counts = pair_tokens(pairs, model_path, spec.max_length)
    reporter = CollectingReporter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train_dpo(spec, model_path, pairs, [], reporter, Path(tmp))
    reference_seconds = outcome.phases.get("reference_seconds", 0.0)
    plan = Plan(spec, len(pairs))
    step_tokens = [
        sum(counts[i] for batch in plan.step_batches(step) for i in batch)
        for step in range(1, outcome.steps + 1)
    ]
    steps = [reporter.steps[s] for s in sorted(reporter.steps) if s > 0]
    return {
        "tokens": sum(step_tokens),
        "seconds": outcome.train_seconds + reference_seconds,
        "reference_seconds": reference_seconds,
        "step_seconds": outcome.step_seconds,
        "step_tokens": step_tokens,
        "losses": [s["loss"] for s in steps],
        "peak_rss_bytes": outcome.peak_rss_bytes,
        "setup": f"{outcome.precision} on {outcome.device}, beta {spec.beta}, {spec.loss_type}",
    }


def trl_precision(args: argparse.Namespace) -> str:
    """bf16 autocast where the CPU has a bf16 matrix unit (as TuneForge's `auto` decides), else
    fp32; or what `--trl-precision` says."""
    if args.trl_precision != "auto":
        return str(args.trl_precision)
    from tuneforge.hardware import detect_hardware

    return "bf16" if detect_hardware().cpu_bf16 else "fp32"


def _same_tokens(dataset: Any, pairs: Sequence[Mapping[str, Any]], model_path: Path) -> bool:
    """Whether TRL's tokenized prompt, chosen and rejected ids are TuneForge's, row by row."""
    from tokenizers import Tokenizer

    from tuneforge.training.components.completions import encode_pair

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    for row, record in zip(dataset, pairs, strict=True):
        pair = encode_pair(record, tokenizer, 1024)
        ours = (pair.chosen.prompt_ids, pair.chosen.answer_ids, pair.rejected.answer_ids)
        if (row["prompt_ids"], row["chosen_ids"], row["rejected_ids"]) != ours:
            return False
    return True


def run_trl(args: argparse.Namespace, model_path: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from train_throughput import step_clock, with_plan_schedule
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    spec = bench_spec(args)
    records = generate_pairs(pair_count(args))
    plan = Plan(spec, len(records))
    order = step_order(plan)
    pairs = [records[i] for i in order]
    counts = pair_tokens(pairs, model_path, spec.max_length)
    dataset = Dataset.from_list([trl_row(pair) for pair in pairs])
    precision = trl_precision(args)
    per_step = spec.effective_batch
    if per_step % args.trl_batch_size:
        raise SystemExit(f"--trl-batch-size must divide the pairs per step ({per_step}).")

    reference_seconds: list[float] = []

    class Timed(with_plan_schedule(DPOTrainer, plan)):  # type: ignore[misc]
        def _precompute_ref_logps(self, *call: Any, **options: Any) -> Any:
            started = time.perf_counter()
            try:
                return super()._precompute_ref_logps(*call, **options)
            finally:
                reference_seconds.append(time.perf_counter() - started)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.eos_token = END_OF_TURN  # a Gemma chat answer ends there, not with <eos>
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    clock = step_clock()
    with tempfile.TemporaryDirectory() as tmp:
        config = DPOConfig(
            output_dir=tmp,
            max_steps=spec.max_steps,
            per_device_train_batch_size=args.trl_batch_size,
            gradient_accumulation_steps=per_step // args.trl_batch_size,
            learning_rate=spec.learning_rate,
            max_grad_norm=spec.max_grad_norm,
            weight_decay=spec.weight_decay,
            seed=spec.seed,
            beta=spec.beta,
            loss_type=[spec.loss_type],
            max_length=spec.max_length,
            precompute_ref_log_probs=args.trl_precompute,
            precompute_ref_batch_size=args.trl_batch_size,
            bf16=precision == "bf16",
            gradient_checkpointing=False,
            train_sampling_strategy="sequential",
            logging_steps=1,
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            dataloader_num_workers=0,
        )
        trainer = Timed(
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
    step_tokens = [sum(counts[i : i + per_step]) for i in range(0, len(counts), per_step)]
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "tokens": sum(counts),
        "seconds": seconds + sum(reference_seconds),
        "reference_seconds": sum(reference_seconds),
        "step_seconds": [b - a for a, b in zip(clock.marks, clock.marks[1:], strict=False)],
        "step_tokens": step_tokens,
        "losses": [entry["loss"] for entry in history],
        "peak_rss_bytes": _peak_rss(),
        "same_tokens": _same_tokens(trainer.train_dataset, pairs, model_path),
        "setup": (
            f"fp32 weights, bf16 autocast={config.bf16}, gradient checkpointing="
            f"{config.gradient_checkpointing}, {args.trl_batch_size} pair(s) per pass x "
            f"{config.gradient_accumulation_steps}, precompute_ref_log_probs="
            f"{config.precompute_ref_log_probs}"
        ),
    }


# -- the parent: both sides, side by side ----------------------------------------------------


def _child(side: str, args: argparse.Namespace, model_path: Path) -> dict[str, Any] | str:
    """Run one side in a child process: its result, or why it failed."""
    options = ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    options += ["--accumulation", str(args.accumulation)]
    options += ["--trl-batch-size", str(args.trl_batch_size), "--trl-precision", args.trl_precision]
    options += ["--trl-precompute"] if args.trl_precompute else []
    return run_child(__file__, side, args, model_path, options)


def _rate(result: Mapping[str, Any], skip_first: bool = False) -> float:
    """Tokens per second, the reference passes included; after the first step, with the share
    of the reference passes that the later steps' pairs took."""
    if not skip_first:
        return float(result["tokens"] / result["seconds"])
    tokens = sum(result["step_tokens"][1:])
    share = tokens / result["tokens"]
    seconds = sum(result["step_seconds"][1:]) + share * result["reference_seconds"]
    return tokens / seconds if seconds else float("nan")


def loss_parity(ours: Sequence[float], trl: Sequence[float], last: int) -> tuple[bool, str]:
    """Whether both sides start at log 2 (zero adapters: every margin 0, within
    `START_TOLERANCE`) and fall from it alike over steps 2 to `last` + 1: their mean falls
    differ by at most `LOSS_TOLERANCE` of TRL's (see the module docstring)."""
    starts = abs(ours[0] - LOG_2) <= START_TOLERANCE and abs(trl[0] - LOG_2) <= START_TOLERANCE
    fall_ours = LOG_2 - statistics.fmean(ours[1 : last + 1])
    fall_trl = LOG_2 - statistics.fmean(trl[1 : last + 1])
    gap = abs(fall_ours - fall_trl) / max(abs(fall_trl), 1e-9)
    same = starts and gap <= LOSS_TOLERANCE
    return same, (
        f"step 1 {ours[0]:.4f} vs {trl[0]:.4f} (log 2 = {LOG_2:.4f}); mean fall from log 2 "
        f"over steps 2-{last + 1} {fall_ours:.4f} vs {fall_trl:.4f}, {gap:.0%} apart; "
        f"tolerance {LOSS_TOLERANCE:.0%}"
    )


def report(results: dict[str, dict[str, Any] | str], args: argparse.Namespace) -> None:
    names = {"ours": "TuneForge", "trl": "TRL"}
    print(
        f"Gemma 3 270M + LoRA r=16 (alpha 32, every linear layer), DPO, {args.steps} steps of "
        f"{args.batch_size} x {args.accumulation} pairs ({pair_count(args)} pairs, one epoch)"
        + (f", {args.threads} torch threads" if args.threads else "")
    )
    ok = {side: r for side, r in results.items() if isinstance(r, dict)}
    for side, result in results.items():
        if isinstance(result, str):
            print(f"{names[side]} failed: {result}")
    print(
        f"{'':>10} {'tokens':>7} {'ref s':>6} {'steps s':>8} {'tokens/s':>9} "
        f"{'after step 1':>13} {'peak RSS':>9} {'loss 1':>7} {'loss 2-' + str(args.last + 1):>9}"
    )
    for side, r in ok.items():
        print(
            f"{names[side]:>10} {r['tokens']:>7,} {r['reference_seconds']:>6.1f} "
            f"{r['seconds'] - r['reference_seconds']:>8.1f} {_rate(r):>9.1f} "
            f"{_rate(r, skip_first=True):>13.1f} {r['peak_rss_bytes'] / 2**30:>7.2f} GB "
            f"{r['losses'][0]:>7.4f} {statistics.fmean(r['losses'][1 : args.last + 1]):>9.4f}"
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
        same = "yes" if ok["trl"]["same_tokens"] else "NO"
        print(f"Same tokens (TRL's prompt, chosen and rejected ids = TuneForge's): {same}")
    if len(ok) < 2:
        print(f"ratio n/a (target >= {TARGET_RATIO:g})")
        print("loss parity: n/a")
        return
    ours, trl = ok["ours"], ok["trl"]
    ratio = _rate(ours) / _rate(trl)
    after = _rate(ours, skip_first=True) / _rate(trl, skip_first=True)
    print(f"ratio {ratio:.2f} (target >= {TARGET_RATIO:g}); {after:.2f} after the first step")
    print(f"peak RSS: TuneForge uses {ours['peak_rss_bytes'] / trl['peak_rss_bytes']:.2f}x TRL's")
    same, detail = loss_parity(ours["losses"], trl["losses"], args.last)
    print(f"loss parity: {'yes' if same else 'no'} ({detail})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=4, help="TuneForge's pairs per batch")
    parser.add_argument("--accumulation", type=int, default=2, help="batches per step")
    parser.add_argument("--last", type=int, default=4, help="steps after the first to compare")
    parser.add_argument("--trl-batch-size", type=int, default=1, help="TRL's pairs per pass")
    parser.add_argument(
        "--trl-precision", choices=["auto", "fp32", "bf16"], default="auto", help="TRL's autocast"
    )
    parser.add_argument(
        "--trl-precompute", action="store_true", help="TRL: precompute_ref_log_probs"
    )
    add_side_arguments(parser)
    run_sides(parser.parse_args(argv), {"ours": run_ours, "trl": run_trl}, _child, report)


if __name__ == "__main__":
    main(sys.argv[1:])
