"""What runs measured on this machine, kept per machine and setup: each run's peak memory and
step time beside the model's figures for it (which `correction.fit` turns into factors for the
next estimates, of any shape), and the timings of the phases around the steps (starting,
evaluating, sampling, checkpoints, saving). The training worker records each run at its end."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import BaseModel, ValidationError

from tuneforge.training.estimate.correction import Correction, Measured, fit
from tuneforge.training.estimate.phases import Timings

#: The trainer of every measurement made before the key named one.
FIRST_TRAINER = "sft"


class MeasuredRun(BaseModel):
    """One finished run's figures: its peak memory and its step time, each beside the model's."""

    memory: Measured
    step_seconds: Measured


class Corrections(BaseModel):
    """The factors measured runs put on the model's memory and step time (None: no runs)."""

    memory: Correction | None = None
    step_seconds: Correction | None = None


class CalibrationCache:
    """Measured runs per (machine, model, method, precision, checkpointing, packing, trainer),
    in a JSON file shared by processes: writes take a file lock and replace the file
    atomically, so readers never see half a file and concurrent writers lose nothing."""

    #: Phase timings kept per key (their mean is used).
    KEEP = 5
    #: Runs kept per key: enough for several shapes with a few runs each.
    KEEP_RUNS = 12

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lock = FileLock(f"{self.path}.lock", timeout=30)

    @staticmethod
    def key(
        hardware_fingerprint: str,
        model_id: str,
        method: str,
        precision: str,
        gradient_checkpointing: bool,
        packing: bool,
        trainer: str = FIRST_TRAINER,
        processes: int = 1,
    ) -> str:
        """The measurements' key; one trainer's speed says nothing of another's, nor a run's in
        one process of a run's over several devices."""
        parts = [
            hardware_fingerprint,
            model_id,
            method,
            precision,
            f"gc={int(gradient_checkpointing)}",
            f"packing={int(packing)}",
        ]
        if trainer != FIRST_TRAINER:  # keys made before there were other trainers stay valid
            parts.append(f"trainer={trainer}")
        if processes > 1:  # keys made before runs over several devices stay valid
            parts.append(f"devices={processes}")
        return "|".join(parts)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        return entries if isinstance(entries, dict) else {}

    def runs(self, key: str) -> list[MeasuredRun]:
        """The runs measured with `key`, oldest first (an entry written before runs were kept
        beside the model's figures has none)."""
        entry = self._read().get(key)
        found = entry.get("runs") if isinstance(entry, dict) else None
        runs = []
        for run in found if isinstance(found, list) else []:
            with contextlib.suppress(ValidationError):
                runs.append(MeasuredRun.model_validate(run))
        return runs

    def corrections(self, key: str) -> Corrections:
        """The factors fitted to the runs measured with `key`."""
        runs = self.runs(key)
        return Corrections(
            memory=fit([run.memory for run in runs]),
            step_seconds=fit([run.step_seconds for run in runs]),
        )

    def timings(self, key: str) -> Timings:
        """The mean of each phase timing measured with `key` (None where there is none)."""
        entry = self._read().get(key)
        found = entry.get("timings") if isinstance(entry, dict) else None
        means: dict[str, float] = {}
        for name in Timings.model_fields:
            values = found.get(name) if isinstance(found, dict) else None
            if isinstance(values, list) and values:
                means[name] = sum(float(v) for v in values) / len(values)
        return Timings.model_validate(means)

    def record(self, key: str, run: MeasuredRun | None, timings: Timings | None = None) -> None:
        """Add a run's figures, if it measured them (keeping the last `KEEP_RUNS`), and its
        phase timings (the last `KEEP` of each)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            entries = self._read()
            found = entries.get(key)
            entry: dict[str, Any] = found if isinstance(found, dict) else {}
            kept_runs = entry.get("runs")
            runs = [
                *(kept_runs if isinstance(kept_runs, list) else []),
                *([run.model_dump()] if run is not None else []),
            ]
            kept = entry.get("timings")
            phases: dict[str, list[float]] = kept if isinstance(kept, dict) else {}
            for name, value in (timings or Timings()).model_dump(exclude_none=True).items():
                phases[name] = [*phases.get(name, []), float(value)][-self.KEEP :]
            entries[key] = {
                "runs": runs[-self.KEEP_RUNS :],
                "timings": phases,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            with _atomic(self.path) as handle:
                json.dump({"version": 2, "entries": entries}, handle, indent=1, sort_keys=True)


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Any]:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
