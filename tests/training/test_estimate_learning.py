"""Estimates that learn, checked on real runs they were not fitted to: the runs of
`estimate_runs.py` (LoRA on tiny-random-gemma3 and Gemma 3 270M at several micro-batch sizes and
max lengths, measured on a 2-core CPU as the train worker measures them, recorded in
data/estimate_runs.json). Each shape is held out in turn: the other shapes' runs are recorded as
the worker records them, and the estimate of the held-out shape, corrected by them, is compared
with what that shape measured."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from tuneforge.hardware import Hardware
from tuneforge.models.catalog import CatalogEntry, catalog
from tuneforge.training.estimate import (
    CalibrationCache,
    Estimate,
    calibration_key,
    estimate,
    measured_run,
)
from tuneforge.training.spec import SFTSpec

RECORDED = json.loads((Path(__file__).parent / "data" / "estimate_runs.json").read_text())
MODELS = sorted({run["base_model"] for run in RECORDED["runs"]})
#: How far the corrected estimates of shapes never measured may be off (relative, either way):
#: the peak on average; the speed in the median run, as the runs were recorded while other
#: work shared the machine's 2 cores (load average about 7): one shape's speed moved by 2-3x
#: between neighbouring runs, and no correction can predict that. The models alone are off by
#: 18-27% (peak) and 3.5-7x (speed) on these runs.
MEMORY_ERROR = 0.10
SPEED_ERROR = 0.6


HARDWARE = Hardware.model_validate(RECORDED["hardware"])


def spec_of(run: dict[str, Any]) -> SFTSpec:
    settings = {k: v for k, v in run.items() if k not in ("peak_rss_bytes", "tokens_per_second")}
    return SFTSpec(dataset_id="d", **settings)


def entry_of(run: dict[str, Any]) -> CatalogEntry:
    entry = catalog().get(run["base_model"])
    assert entry is not None
    return entry


def forecast(run: dict[str, Any], cache: CalibrationCache | None = None) -> Estimate:
    """The estimate of `run`'s settings on its data and machine (corrected by `cache`'s runs)."""
    stats, rows, test = RECORDED["stats"], RECORDED["train_rows"], RECORDED["test_rows"]
    return estimate(spec_of(run), entry_of(run), stats, rows, HARDWARE, cache, test_rows=test)


def record(cache: CalibrationCache, run: dict[str, Any]) -> None:
    """Keep `run`'s measurements as the train worker keeps a finished run's."""
    modelled, spec = forecast(run), spec_of(run)
    key = calibration_key(spec, entry_of(run), HARDWARE, modelled.precision)
    peak, speed = run["peak_rss_bytes"], run["tokens_per_second"]
    cache.record(key, measured_run(spec, modelled, peak, speed))


def error(estimated: float, measured: float) -> float:
    """How far off, relative and alike both ways (1.25x over or under: 0.25)."""
    return math.exp(abs(math.log(estimated / measured))) - 1


def held_out(model_id: str, tmp_path: Path) -> list[tuple[dict[str, Any], Estimate, Estimate]]:
    """Each run of `model_id`, its model-alone estimate, and its estimate corrected by the
    runs of every other shape."""
    runs = [run for run in RECORDED["runs"] if run["base_model"] == model_id]
    assert len({spec_of(run).model_dump_json() for run in runs}) == len(runs) >= 4
    results = []
    for index, run in enumerate(runs):
        cache = CalibrationCache(tmp_path / model_id / f"{index}.json")
        for other in runs:
            if other is not run:
                record(cache, other)
        corrected = forecast(run, cache)
        assert corrected.measured_runs == len(runs) - 1
        results.append((run, forecast(run), corrected))
    return results


@pytest.mark.parametrize("model_id", MODELS)
def test_measured_runs_correct_the_peak_memory_of_shapes_not_measured(
    model_id: str, tmp_path: Path
) -> None:
    results = held_out(model_id, tmp_path)
    alone = [error(m.peak_memory_bytes, r["peak_rss_bytes"]) for r, m, _ in results]
    corrected = [error(c.peak_memory_bytes, r["peak_rss_bytes"]) for r, _, c in results]
    print(f"{model_id} peak memory: model alone {alone}, corrected {corrected}")
    assert statistics.fmean(corrected) < MEMORY_ERROR
    assert statistics.fmean(corrected) < statistics.fmean(alone) / 2


@pytest.mark.parametrize("model_id", MODELS)
def test_measured_runs_correct_the_speed_of_shapes_not_measured(
    model_id: str, tmp_path: Path
) -> None:
    results = held_out(model_id, tmp_path)
    alone = [error(m.tokens_per_second, r["tokens_per_second"]) for r, m, _ in results]
    corrected = [error(c.tokens_per_second, r["tokens_per_second"]) for r, _, c in results]
    print(f"{model_id} speed: model alone {alone}, corrected {corrected}")
    assert statistics.median(corrected) < SPEED_ERROR
    assert statistics.median(corrected) < statistics.median(alone) / 4
