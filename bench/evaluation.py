"""Benchmark: a classification evaluation of a Gemma 3 270M fine-tune, TuneForge's batched
decoding against one transformers `generate` per sample.

    python bench/evaluation.py [--samples 200] [--max-new-tokens 16] [--train-steps 24]
                               [--threads N] [--models-dir DIR]

The fine-tune is made first, by TuneForge's SFT recipe (LoRA r=16 on every linear layer, its
defaults) on generated product reviews labelled `positive` or `negative` (`--train-steps`
steps of 4, about a minute); the evaluation asks it to label other reviews of the same kind.
Both sides answer the same samples (`select_samples` of the classification suite) greedily, in
fp32 on the same threads, with the model and adapter loaded beforehand (loading is not timed):

* TuneForge: the evaluation's own generation, `tuneforge.evaluation.run.answers_of` on the
  transformers engine with the adapter attached (prompts of similar length decoded together, an
  ended answer leaving the batch).
* Baseline: transformers + PEFT, `model.generate` once per sample (greedy, stopping at
  `<end_of_turn>`), as a user evaluating a fine-tune with transformers would write it.

Prints wall and CPU seconds per side, their ratio (target >= 5), whether the answers are the
same, sample for sample, and both sides' classification accuracy. Always exits 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL = "gemma-3-270m"
GOOD = ["great", "excellent", "lovely", "sturdy", "reliable", "wonderful", "superb", "handy"]
BAD = ["awful", "flimsy", "broken", "useless", "disappointing", "noisy", "faulty", "cheap"]
THINGS = ["kettle", "lamp", "backpack", "blender", "chair", "headset", "umbrella", "drill"]
EXTRAS = [
    "I bought it last month.",
    "It arrived on a Tuesday.",
    "My sister has the same one.",
    "The box was blue.",
    "I use it every morning before work.",
    "",
]


def reviews(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` labelled reviews as chat rows (the question, then the label), drawn by `seed`."""
    from tuneforge.data.conversation import message

    rng = random.Random(seed)  # noqa: S311 (made-up reviews, no secret)
    rows = []
    for _ in range(count):
        label = rng.choice(["positive", "negative"])
        words = rng.sample(GOOD if label == "positive" else BAD, 2)
        thing = rng.choice(THINGS)
        extra = rng.choice(EXTRAS)
        review = f"This {thing} is {words[0]} and {words[1]}. {extra}".strip()
        question = f"Review: {review}\nIs this review positive or negative? Answer in one word."
        rows.append({"messages": [message("user", question), message("assistant", label)]})
    return rows


def fine_tune(path: Path, steps: int, workdir: Path) -> Path:
    """A LoRA fine-tune of the model in `path` on labelled reviews, by TuneForge's SFT recipe."""
    from tuneforge.training.recipes.sft import train_sft
    from tuneforge.training.reporting import ConsoleReporter
    from tuneforge.training.spec import SFTSpec

    spec = SFTSpec(
        base_model=MODEL,
        dataset_id="bench",
        max_steps=steps,
        batch_size=4,
        eval_every=0,
        sample_prompts=[],
        check_examples=0,
    )
    outcome = train_sft(spec, path, reviews(steps * 4, seed=1), [], ConsoleReporter(), workdir)
    return outcome.output


def ours(path: Path, adapter: Path, samples: Sequence[Any], tokens: int) -> dict[str, Any]:
    from tuneforge.evaluation.run import answers_of
    from tuneforge.inference.hf_engine import TransformersEngine
    from tuneforge.inference.params import GenerationParams

    engine = TransformersEngine(path)
    engine.add_adapter("tuned", adapter)
    params = GenerationParams(temperature=0.0, max_new_tokens=tokens)
    size = engine.batch_size(max(len(engine._encode(p, ())) for p in _texts(samples)), tokens)
    wall, cpu = time.perf_counter(), time.process_time()
    answers = answers_of(
        engine, "tuned", samples, params, threading.Event(), lambda done: None, engine.chat
    )
    return {
        "answers": answers,
        "seconds": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "setup": f"batches of up to {size} prompts",
    }


def baseline(path: Path, adapter: Path, samples: Sequence[Any], tokens: int) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm, load_tokenizer

    model = PeftModel.from_pretrained(load_causal_lm(path, torch.float32), adapter).eval()
    tokenizer = load_tokenizer(path)
    stop = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    answers = []
    wall, cpu = time.perf_counter(), time.process_time()
    for text in _texts(samples):
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=tokens,
                do_sample=False,
                eos_token_id=[stop, tokenizer.eos_token_id],
                pad_token_id=0,
            )
        new = out[0, ids.shape[1] :]
        answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return {
        "answers": answers,
        "seconds": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "setup": "transformers + PEFT, one generate per sample",
    }


def _texts(samples: Sequence[Any]) -> list[str]:
    from tuneforge.models.chat_template import GEMMA_3

    return [GEMMA_3.render(sample.prompt, add_generation_prompt=True) for sample in samples]


def report(sides: dict[str, dict[str, Any]], samples: Sequence[Any], loads: list[float]) -> None:
    from tuneforge.evaluation.metrics.suites import SUITES

    references = [sample.reference or "" for sample in samples]
    print(f"{len(samples)} samples, {MODEL} + LoRA fine-tune, greedy, fp32")
    print(f"{'':>10} {'wall s':>8} {'cpu s':>8} {'samples/s':>10} {'accuracy':>9}  setup")
    for name, side in sides.items():
        accuracy = SUITES["classification"](side["answers"], references).metrics["accuracy"]
        print(
            f"{name:>10} {side['seconds']:8.1f} {side['cpu']:8.1f} "
            f"{len(samples) / side['seconds']:10.2f} {accuracy:9.1%}  {side['setup']}"
        )
    a, b = sides["TuneForge"], sides["baseline"]
    same = sum(x == y for x, y in zip(a["answers"], b["answers"], strict=True))
    print(f"same answers: {same}/{len(samples)}; the first: {a['answers'][:3]}")
    for x, y, sample in zip(a["answers"], b["answers"], samples, strict=True):
        if x != y:
            print(f"  differs on row {sample.index}: {x!r} vs {y!r}")
    cores = os.cpu_count() or 1
    busy = " BUSY: the figures are noisy" if max(loads) > cores else ""
    shown = " / ".join(f"{load:.1f}" for load in loads)
    print(f"load average (1 min) at start, between and end: {shown} on {cores} CPUs{busy}")
    ratio, cpu_ratio = b["seconds"] / a["seconds"], b["cpu"] / a["cpu"]
    print(f"ratio {ratio:.2f} (target >= 5); CPU time ratio {cpu_ratio:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=200, help="samples evaluated")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="longest answer")
    parser.add_argument("--train-steps", type=int, default=24, help="SFT steps of 4 reviews")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    args = parser.parse_args(argv)
    try:
        import torch

        from tuneforge.evaluation.samples import select_samples
        from tuneforge.models.catalog import catalog
        from tuneforge.models.loading import model_dir

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.models_dir is None:
            from tuneforge.settings import Settings

            args.models_dir = Settings().models_dir
        entry = catalog().get(MODEL)
        assert entry is not None
        path = model_dir(entry, args.models_dir)
        records = reviews(args.samples, seed=2)
        samples, _ = select_samples(records, "classification", max_samples=args.samples, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            adapter = fine_tune(path, args.train_steps, Path(tmp))
            loads = [os.getloadavg()[0]]
            sides = {"TuneForge": ours(path, adapter, samples, args.max_new_tokens)}
            gc.collect()
            loads.append(os.getloadavg()[0])
            sides["baseline"] = baseline(path, adapter, samples, args.max_new_tokens)
            loads.append(os.getloadavg()[0])
        report(sides, samples, loads)
    except Exception as exc:  # the benchmark reports; it does not fail the caller
        print(f"benchmark failed: {type(exc).__name__}: {exc}")
    sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
