"""Measured training speed, peak memory and phase timings (starting, evaluating, sampling,
checkpoints, saving), kept per machine and setup: the training worker records each run's at its
end, and the estimate prefers them to its guesses."""

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
from pydantic import BaseModel, Field

from tuneforge.training.estimate.phases import Timings

#: The trainer of every measurement made before the key named one.
FIRST_TRAINER = "sft"


class Throughput(BaseModel):
    """Speed measured by earlier runs with the same machine, model, method and settings."""

    tokens_per_second: float = Field(description="Mean of the last few measurements.")
    peak_memory_bytes: int | None = Field(description="Mean measured peak memory, if recorded.")
    samples: int = Field(description="How many measurements the mean covers.")


class CalibrationCache:
    """Measured training speed per (machine, model, method, precision, checkpointing, packing),
    in a JSON file shared by processes: writes take a file lock and replace the file
    atomically, so readers never see half a file and concurrent writers lose nothing."""

    KEEP = 5

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
    ) -> str:
        """The measurements' key; one trainer's speed says nothing of another's."""
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
        return "|".join(parts)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        return entries if isinstance(entries, dict) else {}

    def get(self, key: str) -> Throughput | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict) or not entry.get("tokens_per_second"):
            return None
        speeds = [float(v) for v in entry["tokens_per_second"]]
        peaks = [int(v) for v in entry.get("peak_memory_bytes") or []]
        return Throughput(
            tokens_per_second=sum(speeds) / len(speeds),
            peak_memory_bytes=sum(peaks) // len(peaks) if peaks else None,
            samples=len(speeds),
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

    def record(
        self,
        key: str,
        tokens_per_second: float,
        peak_memory_bytes: int | None = None,
        timings: Timings | None = None,
    ) -> Throughput:
        """Add a measurement (keeping the last `KEEP`) and return the new mean."""
        if not tokens_per_second > 0:
            raise ValueError("tokens_per_second must be positive")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            entries = self._read()
            found = entries.get(key)
            entry: dict[str, Any] = found if isinstance(found, dict) else {}
            speeds = [*entry.get("tokens_per_second", []), float(tokens_per_second)]
            peaks = list(entry.get("peak_memory_bytes", []))
            if peak_memory_bytes is not None:
                peaks.append(int(peak_memory_bytes))
            kept = entry.get("timings")
            phases: dict[str, list[float]] = kept if isinstance(kept, dict) else {}
            for name, value in (timings or Timings()).model_dump(exclude_none=True).items():
                phases[name] = [*phases.get(name, []), float(value)][-self.KEEP :]
            entries[key] = {
                "tokens_per_second": speeds[-self.KEEP :],
                "peak_memory_bytes": peaks[-self.KEEP :],
                "timings": phases,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            with _atomic(self.path) as handle:
                json.dump({"version": 1, "entries": entries}, handle, indent=1, sort_keys=True)
        result = self.get(key)
        assert result is not None
        return result


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
