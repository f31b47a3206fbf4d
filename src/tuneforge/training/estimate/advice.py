"""What to change when a run does not fit: the single changes that lower its peak memory (the
method, gradient checkpointing, the batch size, the max length), tried mildest first; else the
mildest combination that fits; else a smaller model or a bigger machine. The peaks of the
settings it tries come from the estimate (`PeakOf`: the memory model, corrected by the runs
measured here)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tuneforge.hardware import Hardware
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.estimate.batches import Lengths
from tuneforge.training.estimate.memory import in_gb
from tuneforge.training.spec import TrainingBase

#: The peak memory of a run of these settings on this model here.
PeakOf = Callable[[TrainingBase, CatalogEntry], int]


def _with(spec: TrainingBase, **update: Any) -> TrainingBase:
    return spec.model_copy(update=update)


def _levers(
    spec: TrainingBase,
    entry: CatalogEntry,
    lengths: Lengths | None,
    hardware: Hardware,
    budget: int,
    peak_of: PeakOf,
) -> list[tuple[str, TrainingBase]]:
    """Single changes that lower the peak, mildest first: the method, checkpointing, then the
    batch size and the max length at the largest value that fits (or their floor)."""
    levers: list[tuple[str, TrainingBase]] = []
    if spec.method == "full":
        levers.append(("choose LoRA instead of full fine-tuning", _with(spec, method="lora")))
    if spec.method == "lora" and hardware.has_cuda:
        levers.append(("choose QLoRA (a 4-bit base)", _with(spec, method="qlora")))
    if not spec.gradient_checkpointing:
        levers.append(("turn on gradient checkpointing", _with(spec, gradient_checkpointing=True)))

    def largest_fitting(field: str, values: list[int]) -> int | None:
        values = sorted({v for v in values if v < getattr(spec, field)}, reverse=True)
        fitting = (v for v in values if peak_of(_with(spec, **{field: v}), entry) <= budget)
        return next(fitting, values[-1] if values else None)

    size = largest_fitting("batch_size", [max(1, spec.batch_size >> i) for i in range(1, 11)])
    if size is not None:
        accumulation = math.ceil(spec.effective_batch / (size * spec.processes))
        kept = size * accumulation * spec.processes
        levers.append(
            (
                f"lower the batch size from {spec.batch_size} to {size} (with gradient "
                f"accumulation {accumulation} to keep {kept} examples per step)",
                _with(spec, batch_size=size, gradient_accumulation=accumulation),
            )
        )
    floor = max(64, _round64(lengths.p50)) if lengths else 256  # never cut most examples
    steps = [_round64(spec.max_length >> i) for i in range(1, 8)]
    length = largest_fitting("max_length", [v for v in steps if v >= floor] or [floor])
    if length is not None:
        levers.append(
            (
                f"lower the max length from {spec.max_length} to {length}",
                _with(spec, max_length=length),
            )
        )
    return levers


def _round64(value: int) -> int:
    return 64 * max(1, -(-value // 64))


def _smaller_model(
    spec: TrainingBase, entry: CatalogEntry, budget: int, peak_of: PeakOf
) -> CatalogEntry | None:
    from tuneforge.models.catalog import catalog

    fitting = [
        other
        for other in catalog().models
        if other.parameters < entry.parameters
        and not other.test_only
        and peak_of(spec, other) <= budget
    ]
    return max(fitting, key=lambda m: m.parameters, default=None)


def what_to_change(
    spec: TrainingBase,
    entry: CatalogEntry,
    lengths: Lengths | None,
    hardware: Hardware,
    peak: int,
    budget: int,
    peak_of: PeakOf,
) -> str:
    """What to change, concretely: the single changes that are enough on their own, in order
    of effect; else the mildest combination that is; else a smaller model or machine."""
    where = "this GPU has" if hardware.has_cuda else "this machine has"
    head = f"Needs about {in_gb(peak)}, {where} {in_gb(budget)} free"
    model = _smaller_model(spec, entry, budget, peak_of)
    smaller = f"pick a smaller model such as {model.name}" if model else ""
    levers = [
        (peak_of(s, entry), text, s)
        for text, s in _levers(spec, entry, lengths, hardware, budget, peak_of)
    ]
    alone = [
        text
        for new_peak, text, _ in sorted(levers, key=lambda lever: lever[0])
        if new_peak <= budget
    ]
    if alone:
        return f"{head}: {', or '.join([*alone, *filter(None, [smaller])])}."
    steps, current = [], spec
    while levers:  # combine, mildest first, until it fits
        _, text, current = levers[0]
        steps.append(text)
        if peak_of(current, entry) <= budget:
            return f"{head}, and no single change is enough: {', and '.join(steps)}" + (
                f"; or {smaller}." if smaller else "."
            )
        levers = [(0, t, s) for t, s in _levers(current, entry, lengths, hardware, budget, peak_of)]
    lightest = in_gb(peak_of(current, entry))
    model = _smaller_model(current, entry, budget, peak_of)
    changes = f"Even if you {_and(steps)}, it" if steps else "It"
    instead = f"pick a smaller model such as {model.name}" if model else "pick a smaller model"
    device = "GPU memory" if hardware.has_cuda else "memory"
    return (
        f"{head}. {changes} needs about {lightest}: {instead}"
        f"{' with those changes' if model and steps else ''}, or a machine with more {device}."
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
