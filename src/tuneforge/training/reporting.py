"""Where a recipe reports: the job context in a worker, the console for `tuneforge train`.

`Tracked` mirrors every metric into TensorBoard (always, in the run's directory) and, when the
spec asks, into Weights & Biases or MLflow (with the keys it is given, or this process's
environment's when it is given none, as in `tuneforge train`); it can map the recipe's progress
(its steps) into a share of the whole job, so saving and storing the model have room after the
last step.
`system_stats` samples CPU, memory and GPU use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import psutil

from tuneforge.errors import InvalidInput
from tuneforge.training.spec import TrainingBase


class Reporter(Protocol):
    """What a recipe needs from whoever runs it (`JobContext` is one)."""

    def progress(self, fraction: float, message: str | None = None) -> None: ...

    def metrics(self, values: dict[str, float], step: int) -> None: ...

    def samples(self, step: int, items: list[dict[str, Any]]) -> None: ...

    def log(self, message: str, level: str = "info") -> None: ...

    @property
    def cancel_requested(self) -> bool: ...


class ConsoleReporter:
    """Prints to the terminal; Ctrl-C asks the run to stop (after saving a checkpoint)."""

    def __init__(self) -> None:
        self.stop = False
        self._last = 0.0

    def progress(self, fraction: float, message: str | None = None) -> None:
        now = time.monotonic()
        if now - self._last >= 2 or fraction >= 1:
            self._last = now
            print(f"[{fraction:6.1%}] {message or ''}", file=sys.stderr, flush=True)

    def metrics(self, values: dict[str, float], step: int) -> None:
        if any(name.startswith("eval_") for name in values):
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"step {step}: {shown}", file=sys.stderr, flush=True)

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        for item in items:
            print(f"  > {item['prompt'][:80]!r}\n  < {item['answer'][:200]!r}", file=sys.stderr)

    def log(self, message: str, level: str = "info") -> None:
        print(f"{level}: {message}", file=sys.stderr, flush=True)

    @property
    def cancel_requested(self) -> bool:
        return self.stop


def system_stats() -> dict[str, float]:
    """CPU and memory use of this machine and process, and GPU memory when CUDA is in use."""
    stats = {
        "system/cpu_percent": psutil.cpu_percent(),
        "system/ram_used_bytes": float(psutil.virtual_memory().used),
        "system/process_rss_bytes": float(psutil.Process().memory_info().rss),
    }
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            stats["system/gpu_memory_bytes"] = float(torch.cuda.memory_allocated())
            stats["system/gpu_memory_peak_bytes"] = float(torch.cuda.max_memory_allocated())
            with contextlib.suppress(Exception):  # needs NVML, which not every install has
                stats["system/gpu_utilization_percent"] = float(torch.cuda.utilization())
    return stats


class Tracked:
    """A reporter that also writes TensorBoard (and W&B / MLflow when asked) logs."""

    def __init__(
        self,
        inner: Reporter,
        spec: TrainingBase,
        directory: Path,
        run_name: str,
        secrets: Mapping[str, str] | None = None,
        share: float = 1.0,
    ) -> None:
        from tensorboardX import SummaryWriter

        self.inner = inner
        self.share = share
        self.writer = SummaryWriter(str(directory))
        self._wandb: Any = None
        self._mlflow: Any = None
        keys: Mapping[str, str] = os.environ if secrets is None else secrets
        config = spec.model_dump(mode="json")
        if "wandb" in spec.tracking:
            wandb = _optional("wandb", "Weights & Biases")
            key = keys.get("WANDB_API_KEY")
            if not key:
                raise InvalidInput("Weights & Biases tracking needs a WANDB_API_KEY secret.")
            wandb.login(key=key, relogin=True)
            self._wandb = wandb.init(project="tuneforge", name=run_name, config=config)
        if "mlflow" in spec.tracking:
            mlflow = _optional("mlflow", "MLflow")
            uri = keys.get("MLFLOW_TRACKING_URI")
            if uri:
                mlflow.set_tracking_uri(uri)
            mlflow.start_run(run_name=run_name)
            mlflow.log_params({k: str(v) for k, v in config.items()})
            self._mlflow = mlflow

    def progress(self, fraction: float, message: str | None = None) -> None:
        self.inner.progress(fraction * self.share, message)

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.inner.metrics(values, step)
        finite = {k: v for k, v in values.items() if math.isfinite(v)}
        for name, value in finite.items():
            self.writer.add_scalar(name, value, step)
        if self._wandb is not None:
            self._wandb.log(finite, step=step)
        if self._mlflow is not None:
            self._mlflow.log_metrics({k.replace("/", "_"): v for k, v in finite.items()}, step)

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        self.inner.samples(step, items)
        text = "\n\n".join(f"**{i['prompt']}**\n\n{i['answer']}" for i in items)
        self.writer.add_text("samples", text, step)

    def log(self, message: str, level: str = "info") -> None:
        self.inner.log(message, level)

    @property
    def cancel_requested(self) -> bool:
        return self.inner.cancel_requested

    def close(self) -> None:
        self.writer.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._mlflow is not None:
            self._mlflow.end_run()


def _optional(module: str, name: str) -> Any:
    if importlib.util.find_spec(module) is None:
        raise InvalidInput(
            f"{name} tracking needs the `{module}` package: pip install 'tuneforge[tracking]'."
        )
    return importlib.import_module(module)
