"""Settings that suit a model, a dataset and a machine, each with one plain-language reason.

`recommend()` starts from the catalog entry's defaults, reads the dataset's length statistics and
asks the estimate what fits, with the spec of the chosen trainer's recipe; `apply()` turns the
recommendations into spec values. Like the estimate, it runs in the web process and never
imports torch.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from tuneforge.hardware import Hardware
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.estimate import (
    CalibrationCache,
    Lengths,
    dataset_lengths,
    device_for,
    estimate,
    resolve_precision,
)
from tuneforge.training.registry import DEFAULT_TRAINER, recipe
from tuneforge.training.spec import Method, TrainingBase

BATCH_SIZES = (16, 8, 4, 2, 1)
EVALUATIONS = 10
CHECKPOINT_SECONDS = 600
HEADROOM = 0.75  # leave a quarter of the free memory to the rest of the machine
FULL_LEARNING_RATE_RATIO = 0.1
DEFAULT_MAX_LENGTH = 1024
PLACEHOLDER_DATASET = "recommendation"


class Recommendation(BaseModel):
    """One recommended setting."""

    field: str = Field(description="The spec's field, such as `max_length`.")
    value: Any = Field(description="The recommended value.")
    reason: str = Field(description="Why, in one plain sentence.")


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-value // multiple) * multiple)


def _max_length(entry: CatalogEntry, lengths: Lengths | None) -> Recommendation:
    if lengths is None:
        value = min(int(entry.defaults.get("max_length", DEFAULT_MAX_LENGTH)), entry.context_length)
        return Recommendation(
            field="max_length",
            value=value,
            reason=f"Without statistics of your data, {value} tokens is a safe middle; process "
            "the dataset to get a length that fits it.",
        )
    value = _round_up(lengths.p95, 64)
    if value > entry.context_length:
        return Recommendation(
            field="max_length",
            value=entry.context_length,
            reason=f"95% of your examples are at most {lengths.p95} tokens, more than "
            f"{entry.name} reads at once: examples are cut at its {entry.context_length}.",
        )
    return Recommendation(
        field="max_length",
        value=value,
        reason=f"95% of your examples are at most {lengths.p95} tokens; longer ones are cut, "
        "and memory grows with this.",
    )


def _epochs(train_rows: int) -> Recommendation:
    if train_rows < 100:
        value, why = 5, "a very small set needs several passes to learn from"
    elif train_rows < 500:
        value, why = 3, "a small set needs a few passes to learn from"
    elif train_rows < 5000:
        value, why = 2, "a mid-sized set learns in two passes without memorising it"
    else:
        value, why = 1, "a large set teaches enough in one pass; more risks memorising it"
    return Recommendation(field="epochs", value=value, reason=f"{train_rows} examples: {why}.")


def _precision(hardware: Hardware, method: Method) -> Recommendation:
    value = resolve_precision("auto", hardware, method)
    if hardware.has_cuda:
        gpu = hardware.gpus[0].name
        reason = (
            f"{gpu} computes natively in bf16: half the memory of fp32, and steadier than fp16."
            if value == "bf16"
            else f"{gpu} has no bf16; fp16 halves the memory and uses its tensor cores."
        )
    elif value == "bf16":
        reason = (
            "This CPU multiplies bf16 matrices in hardware (AMX, or BF16 on Arm): half the "
            "memory of fp32 and faster; the trained weights stay in fp32."
        )
    else:
        reason = (
            "This CPU has no bf16 matrix unit (AMX), so its fp32 matrix products are faster "
            "than bf16 ones: fp32."
        )
    return Recommendation(field="precision", value=value, reason=reason)


def _learning_rate(
    entry: CatalogEntry, method: Method, spec_type: type[TrainingBase]
) -> Recommendation:
    own = spec_type.model_fields["learning_rate"].default
    if own != TrainingBase.model_fields["learning_rate"].default:
        # The trainer has a step size of its own (preference training nudges a model that
        # already answers, more gently than SFT teaches it).
        value = own * FULL_LEARNING_RATE_RATIO if method == "full" else own
        what = "full fine-tuning" if method == "full" else "LoRA"
        return Recommendation(
            field="learning_rate",
            value=value,
            reason=f"This trainer's step size with {what}: it nudges a model that already "
            "answers, more gently than supervised fine-tuning.",
        )
    lora = float(entry.defaults.get("learning_rate", 2e-4))
    if method == "full":
        value = float(entry.defaults.get("full_learning_rate", lora * FULL_LEARNING_RATE_RATIO))
        reason = "Full fine-tuning moves every weight, so it needs a tenth of LoRA's step size."
    else:
        value = lora
        reason = f"The step size that suits {entry.name} with LoRA adapters."
    return Recommendation(field="learning_rate", value=value, reason=reason)


def _target_batch(train_rows: int) -> int:
    """Effective batch: 16, but small sets keep at least ~20 steps per epoch."""
    target = 16
    while target > 4 and train_rows < target * 20:
        target //= 2
    return target


def recommend(
    entry: CatalogEntry,
    stats: Any,
    train_rows: int,
    hardware: Hardware,
    cache: CalibrationCache | None = None,
    trainer: str = DEFAULT_TRAINER,
) -> list[Recommendation]:
    """Recommended settings for fine-tuning `entry` with `trainer`'s recipe on `train_rows`
    examples described by `stats` (`DatasetStats`, its JSON dump, or None) on `hardware`."""
    spec_type = recipe(trainer).spec
    start = {"base_model": entry.id, "dataset_id": PLACEHOLDER_DATASET}
    lengths = dataset_lengths(stats)
    out: list[Recommendation] = []
    batch: list[Recommendation] | None = None
    for method in _methods(hardware):
        out = [
            _method(method),
            _max_length(entry, lengths),
            _epochs(train_rows),
            _precision(hardware, method),
            _learning_rate(entry, method, spec_type),
            *_lora(entry),
        ]
        batch = _batch(entry, stats, train_rows, hardware, _spec(spec_type, out, start), cache)
        if batch is not None:
            break
    out += batch or _nothing_fits(_target_batch(train_rows), hardware)
    result = estimate(_spec(spec_type, out, start), entry, stats, train_rows, hardware, cache)
    steps = max(1, result.steps)
    if _test_rows(stats) == 0:
        out.append(
            Recommendation(
                field="eval_every",
                value=0,
                reason="Your dataset has no test split, so there is nothing to evaluate on "
                "during training.",
            )
        )
    else:
        every = max(1, steps // EVALUATIONS)
        out.append(
            Recommendation(
                field="eval_every",
                value=every,
                reason=f"About {min(EVALUATIONS, steps)} evaluations over the {steps} steps: "
                "enough to see the curve without slowing training much.",
            )
        )
    seconds_per_step = result.training_seconds / steps
    every = max(1, min(steps, math.floor(CHECKPOINT_SECONDS / max(seconds_per_step, 1e-9))))
    every = min(every, max(1, steps // 2))
    out.append(
        Recommendation(
            field="checkpoint_every",
            value=every,
            reason=f"A checkpoint every {every} steps (about every "
            f"{_minutes(every * seconds_per_step)}), so a crash or a cancel loses little.",
        )
    )
    return out


def _spec(
    spec_type: type[TrainingBase], out: list[Recommendation], start: dict[str, Any]
) -> TrainingBase:
    """The spec the recommendations make, for the estimate. Settings a trainer requires that
    recommendations do not choose (GRPO's graders) are left out, the rest unvalidated: the
    estimate does not read them, and the run's own spec must give them."""
    values = apply(out, start)
    missing = [
        name
        for name, field in spec_type.model_fields.items()
        if field.is_required() and name not in values
    ]
    if missing:
        return spec_type.model_construct(**values)
    return spec_type(**values)


def _methods(hardware: Hardware) -> list[Method]:
    return ["lora", "qlora"] if hardware.has_cuda else ["lora"]


def _method(method: Method) -> Recommendation:
    if method == "qlora":
        reason = (
            "LoRA over a 4-bit copy of the model: the only way this model fits in the GPU's "
            "memory, at a small cost in speed."
        )
    else:
        reason = (
            "LoRA trains small adapters beside the frozen model: a fraction of the memory of "
            "full fine-tuning, as good for most tasks, and a small file to keep."
        )
    return Recommendation(field="method", value=method, reason=reason)


def _lora(entry: CatalogEntry) -> list[Recommendation]:
    reasons = {
        "lora_r": "wide enough to learn a task, small enough to train fast.",
        "lora_alpha": "about twice the rank, so updates keep a steady size.",
    }
    return [
        Recommendation(
            field=field, value=entry.defaults[field], reason=f"What suits {entry.name}: {why}"
        )
        for field, why in reasons.items()
        if field in entry.defaults
    ]


def _test_rows(stats: Any) -> int | None:
    if stats is None:
        return None
    data = stats.model_dump() if isinstance(stats, BaseModel) else dict(stats)
    rows = data.get("rows")
    return int(rows.get("test", 0)) if isinstance(rows, dict) else None


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


def _batch(
    entry: CatalogEntry,
    stats: Any,
    train_rows: int,
    hardware: Hardware,
    base: TrainingBase,
    cache: CalibrationCache | None,
) -> list[Recommendation] | None:
    """The preferred micro-batch for the `base` settings that fits with room to spare
    (`_candidates`), with accumulation up to the target effective batch; None when nothing
    fits."""
    target = _target_batch(train_rows)
    gpu = device_for(hardware) == "cuda"
    where = "the GPU's free memory" if gpu else "free RAM"
    for checkpointing, size in _candidates(target, gpu):
        accumulation = math.ceil(target / size)
        spec = base.model_copy(
            update={
                "batch_size": size,
                "gradient_accumulation": accumulation,
                "gradient_checkpointing": checkpointing,
            }
        )
        result = estimate(spec, entry, stats, train_rows, hardware, cache)
        roomy = result.peak_memory_bytes <= HEADROOM * result.available_memory_bytes
        if not result.fits or (size > 1 and not roomy):
            continue
        steady = "steady updates" + (
            " while keeping enough steps for a small set." if target < BATCH_SIZES[0] else "."
        )
        return [
            Recommendation(
                field="batch_size",
                value=size,
                reason=f"The largest batch that fits in {where} with room to spare: about "
                f"{result.peak_memory_bytes / 1e9:.1f} GB of "
                f"{result.available_memory_bytes / 1e9:.1f} GB.",
            ),
            Recommendation(
                field="gradient_accumulation",
                value=accumulation,
                reason=f"{size} x {accumulation} = {size * accumulation} examples per step: "
                f"{steady}",
            ),
            Recommendation(
                field="gradient_checkpointing",
                value=checkpointing,
                reason=_checkpointing_reason(checkpointing, size),
            ),
        ]
    return None


def _candidates(target: int, gpu: bool) -> list[tuple[bool, int]]:
    """(checkpointing, batch size) in order of preference. On a CPU a bigger batch gains little,
    so checkpointing (a third slower) comes last; a GPU needs a few examples per pass to be busy,
    so a batch of 4 or more with checkpointing beats 1 or 2 without."""
    sizes = [s for s in BATCH_SIZES if s <= target]
    if not gpu:
        return [(False, s) for s in sizes] + [(True, s) for s in sizes]
    big, small = [s for s in sizes if s >= 4], [s for s in sizes if s < 4]
    return (
        [(False, s) for s in big]
        + [(True, s) for s in big]
        + [(False, s) for s in small]
        + [(True, s) for s in small]
    )


def _checkpointing_reason(checkpointing: bool, size: int) -> str:
    if not checkpointing:
        return "Not needed: the batch fits without it, and it would cost a third of the speed."
    if size >= 4:
        return (
            f"It lets {size} examples share a pass, which keeps the GPU busy, for about a third "
            "of the speed: a smaller batch without it would be slower still."
        )
    return "Nothing fits without it: it recomputes activations to save memory, a third slower."


def _nothing_fits(target: int, hardware: Hardware) -> list[Recommendation]:
    where = "the GPU's free memory" if hardware.has_cuda else "free RAM"
    return [
        Recommendation(
            field="batch_size",
            value=1,
            reason=f"Even one example at a time does not fit in {where}: the estimate says "
            "what to change.",
        ),
        Recommendation(
            field="gradient_accumulation",
            value=target,
            reason=f"{target} examples per step, one at a time.",
        ),
        Recommendation(
            field="gradient_checkpointing", value=True, reason="It saves the most memory."
        ),
    ]


def apply(recommendations: list[Recommendation], base: dict[str, Any]) -> dict[str, Any]:
    """`base` spec values with the recommended ones set (later recommendations win)."""
    values = dict(base)
    for recommendation in recommendations:
        values[recommendation.field] = recommendation.value
    return values
