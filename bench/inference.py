"""Benchmark: decoding Gemma 3 270M and a LoRA fine-tune of it in the Playground against plain
transformers `generate`.

    python bench/inference.py [--tokens 128] [--runs 3] [--train-steps 2] [--models-dir DIR]

Each side answers the same chat prompt greedily, after one warm-up answer that loads the model,
first from the base model, then from a LoRA fine-tune of it that was not exported: the fine-tune
of `bench/evaluation.py` (TuneForge's SFT recipe on labelled reviews, `--train-steps` steps of 4,
made before either side runs and not timed). Two steps by default: after the evaluation bench's
24 it answers every prompt with one word, and a decoding speed needs long answers; the adapter
costs the same arithmetic whatever it learnt.

* TuneForge: the Playground's path, end to end. A real `tuneforge serve` (its own data folder,
  embedded defaults, no accounts) streams `POST /api/v1/chat` with its default engine (`auto`:
  llama.cpp on the bundled Q4_K_M GGUF when the `gguf` extra is installed, else transformers).
  The fine-tune is stored as a fine-tuned model of the server's one user; its first answer starts
  making and checking its llama.cpp fast path (a GGUF LoRA adapter on the base's GGUF) in the
  background, and transformers answers until it is ready: short answers are asked until one
  comes from llama.cpp (or says why not), and that wait is timed apart. The engine each timed
  answer reports is printed. Time to first token is measured from sending the request to the
  first text event; decode speed over the rest of the answer, from the token counts the server
  reports.
* Baseline: `AutoModelForCausalLM` in fp32 (the converted model, on the same threads) with
  `model.generate` and a `TextIteratorStreamer`, timed the same way; the fine-tune through PEFT
  (`PeftModel.from_pretrained` on that model, the adapter not merged).

Then two answers of the base model stream at once while `GET /api/v1/health` is called every
20 ms: its p99 latency shows whether the web process stays responsive while it relays
generations (target < 100 ms). Prints decode tokens/s, time to first token and answer length per
side and model, the ratios (target >= 5), the health latencies and the load average at the start
and end of each side. Always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

MODEL = "gemma-3-270m"
PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a map in a bottle."
TARGET_RATIO = 5.0
HEALTH_TARGET_MS = 100.0
ROOT = Path(__file__).resolve().parent.parent


def stream_answer(url: str, model: str, tokens: int) -> dict[str, Any]:
    """One streamed Playground answer of `model` (a catalog id or a fine-tuned model's id):
    seconds to the first text, decode tokens/s after it, and the engine the server names."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0,
        "max_new_tokens": tokens,
    }
    started = time.perf_counter()
    first = last = None
    done: dict[str, Any] = {}
    with (
        httpx.Client(timeout=900) as client,
        client.stream("POST", f"{url}/api/v1/chat", json=body) as response,
    ):
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
                if event == "delta":
                    last = time.perf_counter()
                    first = first or last
                elif event == "done":
                    done = data
                elif event == "error":
                    raise RuntimeError(data["message"])
    assert first is not None and last is not None and done, "no answer"
    count = done["usage"]["completion_tokens"]
    return {
        "ttft": first - started,
        "seconds": time.perf_counter() - started,
        "tokens": count,
        "tokens_per_second": (count - 1) / (last - first) if last > first else 0.0,
        "engine": done["engine"],
        "note": done.get("engine_note"),
    }


def ours(args: argparse.Namespace, adapter: Path) -> dict[str, Any]:
    """The Playground side: the base model's answers and health latencies, then the fine-tune
    in `adapter`'s, stored as a model of the server's one user (`auth: none`)."""
    from tests.fine_tuned import add_fine_tuned
    from tests.server import running_server, server_env

    from tuneforge.services.accounts import LOCAL_USER
    from tuneforge.settings import Settings

    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), model_cache_dir=args.models_dir)
        env = server_env(settings, auth="none", run_jobs=False)
        with running_server(env, timeout=120) as url:
            loads = [os.getloadavg()[0]]
            stream_answer(url, MODEL, 8)  # loads the model
            base = [stream_answer(url, MODEL, args.tokens) for _ in range(args.runs)]
            health = health_while_streaming(url, args.tokens)
            tuned = add_fine_tuned(settings, LOCAL_USER, adapter, "bench reviews", MODEL)
            first = until_prepared(url, tuned)
            runs = [stream_answer(url, tuned, args.tokens) for _ in range(args.runs)]
            loads.append(os.getloadavg()[0])
    return {"base": base, "tuned": runs, "first": first, "health_ms": health, "loads": loads}


def until_prepared(url: str, model: str) -> dict[str, Any]:
    """Short answers of the fine-tune `model` until the server stops answering it with
    transformers while its llama.cpp fast path is made and checked (in the background, started
    by the first request): the last answer, with the seconds since the first request."""
    from tuneforge.inference.loaders import STILL_PREPARING

    started = time.perf_counter()
    while True:
        answer = stream_answer(url, model, 8)
        if answer["note"] != STILL_PREPARING:
            return {**answer, "seconds": time.perf_counter() - started}
        time.sleep(1)


def health_while_streaming(url: str, tokens: int) -> list[float]:
    """Latencies (ms) of `GET /api/v1/health` every 20 ms while two answers stream."""
    streams = [threading.Thread(target=stream_answer, args=(url, MODEL, tokens)) for _ in range(2)]
    for thread in streams:
        thread.start()
    latencies = []
    with httpx.Client(timeout=30) as client:
        while any(t.is_alive() for t in streams):
            started = time.perf_counter()
            client.get(f"{url}/api/v1/health").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
    for thread in streams:
        thread.join()
    return latencies


def baseline(args: argparse.Namespace, path: Path, adapter: Path) -> dict[str, Any]:
    """transformers' side: the base model in `path`, then with the PEFT adapter in `adapter`."""
    import torch
    from peft import PeftModel
    from transformers import TextIteratorStreamer

    from tuneforge.models.chat_template import render
    from tuneforge.models.loading import load_causal_lm, load_tokenizer

    loads = [os.getloadavg()[0]]
    model = load_causal_lm(path, torch.float32)
    tokenizer = load_tokenizer(path)
    text = render([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids

    def answer(model: Any, tokens: int) -> dict[str, float]:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)  # type: ignore[arg-type]
        kwargs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": tokens,
            "do_sample": False,
            "streamer": streamer,
        }
        result: dict[str, Any] = {}
        started = time.perf_counter()
        worker = threading.Thread(target=lambda: result.update(output=model.generate(**kwargs)))
        worker.start()
        first = last = None
        for piece in streamer:
            if piece:
                last = time.perf_counter()
                first = first or last
        worker.join()
        assert first is not None and last is not None
        count = int(result["output"].shape[1] - ids.shape[1])
        return {
            "ttft": first - started,
            "tokens": count,
            "tokens_per_second": (count - 1) / (last - first) if last > first else 0.0,
        }

    def runs(model: Any) -> list[dict[str, float]]:
        answer(model, 8)
        return [answer(model, args.tokens) for _ in range(args.runs)]

    base = runs(model)
    tuned = runs(PeftModel.from_pretrained(model, adapter).eval())
    loads.append(os.getloadavg()[0])
    return {"base": base, "tuned": tuned, "loads": loads}


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    def median(side: str, model: str, key: str) -> float:
        return float(statistics.median(run[key] for run in results[side][model]))

    def line(side: str, model: str, label: str, setup: str) -> None:
        print(
            f"{label:>10}  {median(side, model, 'tokens_per_second'):16.1f}  "
            f"{median(side, model, 'ttft') * 1000:9.0f} ms  "
            f"{median(side, model, 'tokens'):7.0f}   ({setup})"
        )

    def ratio(model: str) -> float:
        ours, base = (median(side, model, "tokens_per_second") for side in ("ours", "base"))
        return ours / base if base else float("nan")

    ours = results["ours"]
    print(f"Greedy answers of up to {args.tokens} tokens, median of {args.runs} runs")
    print(f"{'':>10}  {'decode tokens/s':>16}  {'first token':>12}  {'tokens':>7}")
    print("Gemma 3 270M")
    line("ours", "base", "TuneForge", f"Playground, {ours['base'][0]['engine']} engine")
    line("base", "base", "baseline", "transformers generate, fp32")
    print(f"ratio {ratio('base'):.2f} (target >= {TARGET_RATIO:g})")
    print(f"LoRA fine-tune of it (not exported, {args.train_steps} SFT steps)")
    engines = sorted({run["engine"] for run in ours["tuned"]})
    notes = sorted({run["note"] for run in ours["tuned"] if run["note"]})
    line("ours", "tuned", "TuneForge", f"Playground, {', '.join(engines)} engine")
    line("base", "tuned", "baseline", "transformers + PEFT generate, fp32")
    print(f"ratio {ratio('tuned'):.2f} (target >= {TARGET_RATIO:g})")
    print(
        f"engine reported for the fine-tune: {', '.join(engines)}"
        + "".join(f"; {note}" for note in notes)
    )
    first = ours["first"]
    print(
        f"its fast path made and checked (once, in the background, transformers answering "
        f"meanwhile) and loaded: its first answer on {first['engine']} after "
        f"{first['seconds']:.1f} s"
    )
    latencies = sorted(ours["health_ms"])
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    verdict = "yes" if p99 < HEALTH_TARGET_MS else "no"
    print(
        f"health while two answers stream: {len(latencies)} calls, median "
        f"{statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms (under {HEALTH_TARGET_MS:g}: "
        f"{verdict})"
    )
    cores = os.cpu_count() or 1
    loads = ours["loads"] + results["base"]["loads"]
    busy = ": BUSY, the figures are noisy" if max(loads) > cores else ""
    shown = ", ".join(
        f"{name} {' / '.join(f'{load:.1f}' for load in results[side]['loads'])}"
        for name, side in (("TuneForge", "ours"), ("baseline", "base"))
    )
    print(f"load average (1 min) at the start and end of each side: {shown} on {cores} CPUs{busy}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=128, help="longest answer, in tokens")
    parser.add_argument("--runs", type=int, default=3, help="timed answers per side and model")
    parser.add_argument(
        "--train-steps",
        type=int,
        default=2,
        help="the fine-tune's SFT steps (few: after 24 it answers any prompt with one word)",
    )
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the fine-tune and the test server's helpers
    try:
        from bench.evaluation import fine_tune

        from tuneforge.models.catalog import catalog
        from tuneforge.models.loading import model_dir

        if args.models_dir is None:
            from tuneforge.settings import Settings

            args.models_dir = Settings().models_dir
        entry = catalog().get(MODEL)
        assert entry is not None
        path = model_dir(entry, args.models_dir)
        with tempfile.TemporaryDirectory() as tmp:
            adapter = fine_tune(path, args.train_steps, Path(tmp))
            results = {"ours": ours(args, adapter), "base": baseline(args, path, adapter)}
        report(results, args)
    except Exception as exc:  # the benchmark reports; it does not fail the caller
        print(f"benchmark failed: {type(exc).__name__}: {exc}")
    sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
