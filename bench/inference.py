"""Benchmark: decoding Gemma 3 270M in the Playground against plain transformers `generate`.

    python bench/inference.py [--tokens 128] [--runs 3] [--threads N] [--models-dir DIR]

Both sides answer the same chat prompt greedily, after one warm-up answer that loads the model:

* TuneForge: the Playground's path, end to end. A real `tuneforge serve` (its own data folder,
  embedded defaults) streams `POST /api/v1/chat` with its default engine (`auto`: llama.cpp on
  the bundled Q4_K_M GGUF when the `gguf` extra is installed, else transformers). Time to first
  token is measured from sending the request to the first text event; decode speed over the
  rest of the answer, from the token counts the server reports.
* Baseline: `AutoModelForCausalLM` in fp32 (the converted model, on the same threads) with
  `model.generate` and a `TextIteratorStreamer`, timed the same way.

Then two answers stream at once while `GET /api/v1/health` is called every 20 ms: its p99 latency
shows whether the web process stays responsive while it relays generations (target < 100 ms).
Prints decode tokens/s and time to first token per side, their ratio (target >= 5) and the
health latencies. Always exits 0.
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


def stream_answer(url: str, tokens: int) -> dict[str, float]:
    """One streamed Playground answer: seconds to the first text, decode tokens/s after it."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0,
        "max_new_tokens": tokens,
    }
    started = time.perf_counter()
    first = last = None
    done: dict[str, Any] = {}
    with (
        httpx.Client(timeout=600) as client,
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
        "tokens": count,
        "tokens_per_second": (count - 1) / (last - first) if last > first else 0.0,
        "engine": done["engine"],
    }


def ours(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.server import running_server

    with tempfile.TemporaryDirectory() as data:
        env = {
            "TUNEFORGE_DATA_DIR": data,
            "TUNEFORGE_MODEL_CACHE_DIR": str(args.models_dir),
            "TUNEFORGE_AUTH": "none",
            "TUNEFORGE_RUN_JOBS": "false",
        }
        with running_server(env, timeout=120) as url:
            stream_answer(url, 8)  # loads the model
            runs = [stream_answer(url, args.tokens) for _ in range(args.runs)]
            health = health_while_streaming(url, args.tokens)
    return {"runs": runs, "health_ms": health}


def health_while_streaming(url: str, tokens: int) -> list[float]:
    """Latencies (ms) of `GET /api/v1/health` every 20 ms while two answers stream."""
    streams = [threading.Thread(target=stream_answer, args=(url, tokens)) for _ in range(2)]
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


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import TextIteratorStreamer

    from tuneforge.models.catalog import catalog
    from tuneforge.models.chat_template import render
    from tuneforge.models.loading import load_causal_lm, load_tokenizer, model_dir

    entry = catalog().get(MODEL)
    assert entry is not None
    path = model_dir(entry, args.models_dir)
    model = load_causal_lm(path, torch.float32)
    tokenizer = load_tokenizer(path)
    text = render([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids

    def answer(tokens: int) -> dict[str, float]:
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
        worker = threading.Thread(
            target=lambda: result.update(output=model.generate(**kwargs))  # type: ignore[operator]
        )
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

    answer(8)
    return {"runs": [answer(args.tokens) for _ in range(args.runs)]}


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    def median(side: str, key: str) -> float:
        return statistics.median(run[key] for run in results[side]["runs"])

    engine = results["ours"]["runs"][0]["engine"]
    print(f"Gemma 3 270M, greedy answers of up to {args.tokens} tokens, median of {args.runs} runs")
    print(f"{'':>10}  {'decode tokens/s':>16}  {'first token':>12}")
    print(
        f"{'TuneForge':>10}  {median('ours', 'tokens_per_second'):16.1f}  "
        f"{median('ours', 'ttft') * 1000:9.0f} ms   (Playground, {engine} engine)"
    )
    print(
        f"{'baseline':>10}  {median('base', 'tokens_per_second'):16.1f}  "
        f"{median('base', 'ttft') * 1000:9.0f} ms   (transformers generate, fp32)"
    )
    ratio = median("ours", "tokens_per_second") / median("base", "tokens_per_second")
    print(f"ratio {ratio:.2f} (target >= {TARGET_RATIO:g})")
    latencies = sorted(results["ours"]["health_ms"])
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    verdict = "yes" if p99 < HEALTH_TARGET_MS else "no"
    print(
        f"health while two answers stream: {len(latencies)} calls, median "
        f"{statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms (under {HEALTH_TARGET_MS:g}: "
        f"{verdict})"
    )
    print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=128, help="longest answer, in tokens")
    parser.add_argument("--runs", type=int, default=3, help="timed answers per side")
    parser.add_argument("--models-dir", type=Path, help="default: the settings' models_dir")
    args = parser.parse_args(argv)
    try:
        if args.models_dir is None:
            from tuneforge.settings import Settings

            args.models_dir = Settings().models_dir
        results = {"ours": ours(args), "base": baseline(args)}
        report(results, args)
    except Exception as exc:  # the benchmark reports; it does not fail the caller
        print(f"benchmark failed: {type(exc).__name__}: {exc}")
    sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
