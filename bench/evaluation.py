"""Benchmark: a classification evaluation of a Gemma 3 270M fine-tune, TuneForge's evaluation
path (llama.cpp's fast path for a LoRA fine-tune) against one transformers `generate` per sample.

    python bench/evaluation.py [--samples 200] [--max-new-tokens 16] [--train-steps 24]
                               [--threads N] [--models-dir DIR]

The fine-tune is made first, by TuneForge's SFT recipe (LoRA r=16 on every linear layer, its
defaults) on generated product reviews labelled `positive` or `negative` (`--train-steps`
steps of 4, about a minute); the evaluation asks it to label other reviews of the same kind.
Both sides answer the same samples (`select_samples` of the classification suite) greedily:

* TuneForge: what an evaluation job does with the fine-tune, stored as a model's files in the
  artifact store. `answering_engine` picks the engine and, the first time, prepares the
  fine-tune's llama.cpp fast path (its GGUF adapter, checked against transformers + PEFT); that
  preparation is timed and reported apart, as it happens once per fine-tune. The engine is then
  loaded with the adapter attached (not timed), and `answers_of` answers the samples (timed):
  greedy answers decoded together in batches, on llama.cpp or (a fine-tune whose fast path is
  off) on transformers.
* Baseline: transformers + PEFT in fp32 (`--threads` torch threads), `model.generate` once per
  sample (greedy, stopping at `<end_of_turn>`), as a user evaluating a fine-tune with
  transformers would write it; model and adapter loading are not timed.

Prints the engine that answered, wall and CPU seconds per side, their ratio (target >= 5), how
many answers are the same, sample for sample, both sides' classification accuracy and the load
average. Always exits 0.
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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuneforge.settings import Settings

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
    """A LoRA fine-tune of the model in `path` on labelled reviews, by TuneForge's SFT recipe,
    in fp32 whatever the CPU: `auto` trains in bf16 on a CPU with AMX, where this fine-tune
    learned the task worse (last loss 2.55 against 1.67 in fp32, in the same 37 s) and its
    answers ran on past the label, so the two sides would time longer answers."""
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
        precision="fp32",
    )
    outcome = train_sft(spec, path, reviews(steps * 4, seed=1), [], ConsoleReporter(), workdir)
    return outcome.output


def ours(adapter: Path, samples: Sequence[Any], tokens: int, settings: Settings) -> dict[str, Any]:
    """The evaluation's own answers from the fine-tune in `adapter`, stored as a model's files
    in `settings`' artifact store, with the one-time preparation of its fast path timed apart."""
    from tuneforge.evaluation.run import answering_engine, answers_of
    from tuneforge.inference import loaders
    from tuneforge.inference.params import GenerationParams, ModelRef
    from tuneforge.models.catalog import load_catalog
    from tuneforge.models.chat_template import format_of
    from tuneforge.storage import ArtifactStore

    key = "bench/evaluation/model"
    ArtifactStore(settings.resolved_storage_url).put_dir(key, adapter)
    ref = ModelRef(base=MODEL, artifact_key=key, kind="adapter")
    catalog = load_catalog(settings.catalog_file)
    started = time.perf_counter()
    name, note = answering_engine([ref], catalog, settings)
    preparation = time.perf_counter() - started
    engine = loaders.load(name, ref, settings, batch=True)
    attached = loaders.attach(engine, ref, settings)
    params = GenerationParams(temperature=0.0, max_new_tokens=tokens)
    chat = format_of(catalog.get(MODEL))
    wall, cpu = time.perf_counter(), time.process_time()
    answers = answers_of(
        engine, attached, samples, params, threading.Event(), lambda done: None, chat
    )
    return {
        "answers": answers,
        "seconds": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "setup": f"evaluation path, {name} engine" + (f" ({note})" if note else ""),
        "engine": name,
        "preparation": preparation,
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
    print(
        f"TuneForge answered on {a['engine']}; preparing its fast path (once per fine-tune, "
        f"not timed above) took {a['preparation']:.1f} s"
    )
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
        from tuneforge.settings import Settings

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.models_dir is None:
            args.models_dir = Settings().models_dir
        entry = catalog().get(MODEL)
        assert entry is not None
        path = model_dir(entry, args.models_dir)
        records = reviews(args.samples, seed=2)
        samples, _ = select_samples(records, "classification", max_samples=args.samples, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            adapter = fine_tune(path, args.train_steps, Path(tmp))
            loads = [os.getloadavg()[0]]
            settings = Settings(data_dir=Path(tmp) / "data", model_cache_dir=args.models_dir)
            sides = {"TuneForge": ours(adapter, samples, args.max_new_tokens, settings)}
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
