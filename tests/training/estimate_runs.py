"""Real training runs measured as the train worker measures them (the peak RSS of a process of
its own, the median step's tokens/s), for the estimate's held-out test
(`test_estimate_learning.py`). On a quiet machine,

    .venv/bin/python -m tests.training.estimate_runs > tests/training/data/estimate_runs.json

trains each model and shape of `SHAPES` a few steps on the same generated chat data, each run in
a fresh process (the peak RSS only grows), and prints the machine, the data's statistics and
each run's settings and measurements.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Runs per model: LoRA at several micro-batch sizes and max lengths (packed, as by default).
SHAPES: dict[str, list[dict[str, int]]] = {
    "tiny-random-gemma3": [
        {"batch_size": b, "max_length": n} for n in (128, 512) for b in (1, 2, 4, 8)
    ],
    "gemma-3-270m": [
        {"batch_size": 1, "max_length": 128},
        {"batch_size": 2, "max_length": 128},
        {"batch_size": 4, "max_length": 128},
        {"batch_size": 1, "max_length": 512},
        {"batch_size": 2, "max_length": 256},
        {"batch_size": 4, "max_length": 256},
    ],
}
#: Every run's other settings: a few steps, the end's evaluation and sample answers.
SETTINGS: dict[str, Any] = {"max_steps": 4, "sample_max_new_tokens": 16, "lora_r": 8}
TRAIN_ROWS, TEST_ROWS = 64, 8
WORDS = ("the", "a", "model", "learns", "answers", "about", "colours", "cities", "and", "tools")


def conversations(count: int, seed: int) -> list[dict[str, Any]]:
    """Chat examples with prompts of 5-120 words and answers of 3-200 (deterministic)."""
    from tuneforge.data.conversation import message

    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    return [
        {"messages": [message("user", words(5, 120)), message("assistant", words(3, 200))]}
        for _ in range(count)
    ]


def run(model_id: str, shape: dict[str, int]) -> dict[str, float]:
    """Train `model_id` in this process; its peak RSS and median step speed."""
    from tests.models import models_cache_dir
    from tests.training.conftest import Recorder
    from tuneforge.models.catalog import catalog
    from tuneforge.models.loading import model_dir
    from tuneforge.training.recipes.sft import train_sft
    from tuneforge.training.spec import SFTSpec

    entry = catalog().get(model_id)
    assert entry is not None
    path = model_dir(entry, models_cache_dir())
    spec = SFTSpec(base_model=model_id, dataset_id="d", **SETTINGS, **shape)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as workdir:
        outcome = train_sft(
            spec,
            path,
            conversations(TRAIN_ROWS, 0),
            conversations(TEST_ROWS, 1),
            Recorder(),
            Path(workdir),
        )
    return {
        "peak_rss_bytes": outcome.peak_rss_bytes,
        "tokens_per_second": outcome.tokens_per_second,
    }


def statistics() -> dict[str, Any]:
    """The dataset statistics processing would record for the runs' data."""
    from tests.models import models_cache_dir
    from tuneforge.data.stats import compute_stats
    from tuneforge.models.tokenizer import gemma_tokenizer

    splits = {"train": conversations(TRAIN_ROWS, 0), "test": conversations(TEST_ROWS, 1)}
    return compute_stats(splits, gemma_tokenizer(models_cache_dir())).model_dump(mode="json")


def main() -> None:
    if sys.argv[1:2] == ["--run"]:
        print(json.dumps(run(sys.argv[2], json.loads(sys.argv[3]))))
        return
    from tuneforge.hardware import detect_hardware

    runs = []
    for model_id, shapes in SHAPES.items():
        for shape in shapes:
            command = ["-m", "tests.training.estimate_runs", "--run", model_id, json.dumps(shape)]
            child = subprocess.run(
                [sys.executable, *command],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            runs.append({"base_model": model_id, **SETTINGS, **shape, **measured})
            print(runs[-1], file=sys.stderr)
    recorded = {
        "hardware": detect_hardware().model_dump(mode="json"),
        "train_rows": TRAIN_ROWS,
        "test_rows": TEST_ROWS,
        "stats": statistics(),
        "runs": runs,
    }
    print(json.dumps(recorded, indent=1))


if __name__ == "__main__":
    main()
