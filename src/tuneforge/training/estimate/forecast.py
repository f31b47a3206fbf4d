"""Before a run: will it fit in memory, and how long will it take? `estimate()` puts the memory
model and the speed model, both corrected by the runs measured here (`correction`), the phases
around the steps and the refusal advice together, with the warnings worth reading. Torch-free:
the web process calls it for every form change."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from tuneforge.hardware import Hardware
from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.estimate.advice import PeakOf, what_to_change
from tuneforge.training.estimate.architecture import LINEAR_MODULES, lora_parameters, lora_targets
from tuneforge.training.estimate.batches import Lengths, dataset_lengths, micro_batches
from tuneforge.training.estimate.calibration import CalibrationCache, Corrections, MeasuredRun
from tuneforge.training.estimate.correction import Correction, Measured
from tuneforge.training.estimate.images import (
    image_memory_bytes,
    image_seconds,
    images_per_row,
    model_lengths,
    trained_parts,
    typical_image_tokens,
)
from tuneforge.training.estimate.memory import (
    PRECISION_BYTES,
    Device,
    MemoryBreakdown,
    ResolvedPrecision,
    device_for,
    in_gb,
    memory_breakdown,
    resolve_precision,
)
from tuneforge.training.estimate.phases import Phases, Timings, phases
from tuneforge.training.estimate.throughput import STEP_SECONDS, flops_per_token, hardware_flops
from tuneforge.training.recipe import Batching
from tuneforge.training.registry import recipe_for
from tuneforge.training.spec import TrainingBase

TIGHT_FRACTION = 0.85


class StepModel(BaseModel):
    """The speed model's figures for a step of the run, before measured runs correct them."""

    fixed_seconds: float = Field(description="A step's fixed cost.")
    varying_seconds: float = Field(description="A step's tokens at the modelled FLOP/s.")
    tokens: float = Field(description="Tokens a step trains on.")


class Estimate(BaseModel):
    """What a run would need and how long it would take, before it starts."""

    peak_memory_bytes: int = Field(description="Estimated peak memory of training, in bytes.")
    available_memory_bytes: int = Field(
        description="Memory free on the training device now (RAM on a CPU, the GPU's memory on "
        "a GPU), in bytes."
    )
    fits: bool = Field(description="The run can start here: it fits and nothing refuses it.")
    device: Device = Field(description="Where it would train: `cuda` or `cpu`.")
    precision: ResolvedPrecision = Field(description="The number format `auto` resolves to.")
    trainable_parameters: int = Field(description="Parameters the optimizer updates.")
    total_parameters: int = Field(description="Parameters of the whole model.")
    steps: int = Field(description="Optimizer steps of the run.")
    tokens: int = Field(description="Tokens the run trains on (all epochs).")
    tokens_per_second: float = Field(
        description="Expected training speed: tokens over the steps' time, fixed costs included."
    )
    duration_seconds: float = Field(
        description="Expected time of the whole run: starting and loading the model, the "
        "steps, evaluations, sample answers, checkpoints and saving the model."
    )
    training_seconds: float = Field(description="Expected time of the optimizer steps alone.")
    phases: Phases = Field(description="Expected seconds of each phase of the run.")
    calibrated: bool = Field(
        description="Runs measured on this machine corrected the speed and the peak memory; "
        "otherwise they are the models' rough guesses."
    )
    measured_runs: int = Field(
        default=0,
        description="How many runs measured here, with this model, method and setup (any batch "
        "size and length), corrected the speed and the peak memory.",
    )
    memory: MemoryBreakdown = Field(
        description="Where the peak memory goes, as the memory model has it (its total before "
        "measured runs correct it)."
    )
    step: StepModel = Field(description="The speed model's step, before measured runs correct it.")
    messages: list[str] = Field(default_factory=list, description="Warnings worth reading.")
    refusal: str | None = Field(
        default=None,
        description="Why the run cannot start here and what to change, in order of effect "
        "(None when it can start).",
    )


def _available(hardware: Hardware) -> int:
    if hardware.has_cuda:
        return hardware.gpus[0].memory_free_bytes
    return hardware.memory_available_bytes


def estimate(
    spec: TrainingBase,
    entry: CatalogEntry,
    stats: Any,
    train_rows: int,
    hardware: Hardware,
    cache: CalibrationCache | None = None,
    test_rows: int | None = None,
) -> Estimate:
    """Memory, speed and duration of training `entry` with `spec` on `train_rows` examples
    whose lengths `stats` describes (`DatasetStats`, its JSON dump, or None: examples taken to
    be `max_length` long), on `hardware`; `test_rows` test examples are evaluated on (None:
    about a tenth of the training examples' count)."""
    device = device_for(hardware)
    precision = resolve_precision(spec.precision, hardware, spec.method)
    lengths = model_lengths(dataset_lengths(stats), stats, entry)
    batching: Batching = recipe_for(spec).batching(spec)
    typical, worst = micro_batches(spec, lengths)
    memory = memory_breakdown(spec, entry, precision, worst, device)
    # A vision model reading the dataset's images (`estimate/images.py`).
    mean_images, most_images = images_per_row(stats) if entry.vision else (0.0, 0)
    evaluated = min(train_rows // 9 if test_rows is None else test_rows, spec.eval_max_examples)
    distinct_images = (max(0, train_rows) + max(0, evaluated)) * mean_images
    if mean_images:
        in_batch = math.ceil(most_images + (spec.batch_size - 1) * mean_images)
        held = image_memory_bytes(
            spec, entry, PRECISION_BYTES[precision], in_batch, distinct_images
        )
        memory = memory.model_copy(update={"images_bytes": held})
    arch = entry.architecture
    trainable = (
        entry.parameters
        if spec.method == "full"
        else lora_parameters(arch, spec.lora_r, spec.lora_target_modules)
    )
    messages: list[str] = []

    # -- how much work ---------------------------------------------------------------------------
    rows = max(0, train_rows)
    per_example = lengths.truncated_mean(spec.max_length) if lengths else spec.max_length / 2
    if spec.max_steps is not None:
        steps = spec.max_steps
        tokens = steps * spec.effective_batch * per_example
    else:
        steps = math.ceil(math.ceil(rows / spec.effective_batch) * spec.epochs) if rows else 0
        tokens = rows * per_example * spec.epochs
    tokens *= batching.sequences  # a preference pair trains both its answers
    if not batching.packed and lengths:  # padding costs compute too
        tokens_computed = tokens * typical.row_tokens / max(per_example, 1)
    else:
        tokens_computed = tokens

    # -- how fast: a step's fixed cost and its tokens' FLOPs -------------------------------------
    fraction = typical.loss_tokens / typical.tokens
    work = flops_per_token(
        arch,
        spec.method,
        trainable,
        fraction,
        typical.row_tokens if typical.masked else typical.row_tokens / 2,
        spec.gradient_checkpointing,
    )
    speed = hardware_flops(hardware, precision, spec.method) / work
    # Passes without gradients (a reference's) cost about a third of a trained one's.
    speed /= 1 + batching.reference_passes / (3 * batching.sequences)
    speed *= tokens / tokens_computed if tokens_computed else 1.0
    varying = tokens / speed if speed > 0 else 0.0
    if mean_images:
        examples = spec.max_steps * spec.effective_batch if spec.max_steps else rows * spec.epochs
        varying += image_seconds(
            spec,
            entry,
            hardware_flops(hardware, precision, spec.method),
            examples * mean_images,
            distinct_images,
        )
    step = StepModel(
        fixed_seconds=STEP_SECONDS,
        varying_seconds=varying / steps if steps else 0.0,
        tokens=tokens / steps if steps else 0.0,
    )

    # -- corrected by the runs measured here -----------------------------------------------------
    corrections, timings = Corrections(), Timings()
    if cache is not None:
        key = calibration_key(spec, entry, hardware, precision)
        corrections, timings = cache.corrections(key), cache.timings(key)
    training = _corrected(corrections.step_seconds, steps * STEP_SECONDS, varying)
    peak = round(_corrected(corrections.memory, memory.fixed_bytes, memory.varying_bytes))
    measured_runs = corrections.step_seconds.runs if corrections.step_seconds else 0
    expected = phases(
        spec,
        entry,
        steps,
        training,
        tokens / training if training > 0 else 0.0,
        per_example * batching.sequences,
        rows // 9 if test_rows is None else max(0, test_rows),
        trainable,
        timings,
    )

    # -- warnings and refusals -------------------------------------------------------------------
    available = _available(hardware)
    refusal = None
    if spec.method == "qlora" and not hardware.has_cuda:
        refusal = "QLoRA needs a CUDA GPU with bitsandbytes; this machine has none: choose LoRA."
    elif peak > available:
        peak_of = _peak_of(lengths, hardware, cache)
        refusal = what_to_change(spec, entry, lengths, hardware, peak, available, peak_of)
    elif peak > TIGHT_FRACTION * available:
        messages.append(
            f"Memory is tight: about {in_gb(peak)} of {in_gb(available)} free. Other programs "
            "starting now could make the run fail; gradient checkpointing or a smaller batch "
            "leaves room."
        )
    if mean_images:
        parts = trained_parts(spec)
        vision = entry.vision
        each = f"{vision.tokens_per_image if vision else 0} tokens"
        if vision is not None and vision.variable_resolution:
            each = (
                f"about {typical_image_tokens(stats, vision)} tokens (at most "
                f"{vision.tokens_per_image}: the count follows the image's shape)"
            )
        messages.append(
            f"{entry.name} reads about {mean_images:.1f} image(s) an example, each {each}; "
            + (
                f"besides the language model it trains the {' and the '.join(parts)} "
                "(the image encoder runs at every step)."
                if parts
                else "its image side is frozen: each image goes through the encoder once and "
                "its features are kept."
            )
        )
    elif entry.modality == "vision":
        media, encoders = (
            ("images and audio", "image and audio encoders are")
            if entry.family == "gemma-3n"
            else ("images", "image encoder is")
        )
        messages.append(
            f"{entry.name} also reads {media}; this dataset is text only. The {encoders} "
            "loaded (and counted in the memory) but not trained."
        )
    if entry.test_only:
        messages.append(
            f"{entry.name} has random weights: use it to test the pipeline, not to "
            "get a useful model."
        )
    _, unknown = lora_targets(arch, spec.lora_target_modules)
    if unknown and spec.method != "full":
        messages.append(
            f"No {entry.name} layer is called {', '.join(unknown)}; known names: "
            f"{', '.join(LINEAR_MODULES)} (or `all-linear`)."
        )
    if device == "cpu" and precision == "bf16" and not hardware.cpu_bf16:
        messages.append(
            "This CPU has no bf16 matrix unit (AMX), so bf16 is slower than fp32 here: "
            "choose `auto` (fp32 here)."
        )
    if device == "cuda" and precision == "bf16" and not hardware.gpus[0].bf16:
        messages.append(f"{hardware.gpus[0].name} has no native bf16: choose `auto` (fp16).")
    if device == "cpu" and precision == "fp16":
        messages.append("fp16 on a CPU is slow and unstable: choose `auto`.")
    if lengths is None:
        messages.append(
            "Without dataset statistics, every example is taken to be max length "
            "long for memory and half of it for time."
        )
    elif lengths.p95 > spec.max_length:
        messages.append(
            f"More than 5% of the examples are longer than max length {spec.max_length} and "
            f"will be cut (95% are at most {lengths.p95} tokens)."
        )
    if not measured_runs:
        messages.append(
            "The duration is a rough guess until a run on this machine measures the real speed."
        )

    return Estimate(
        peak_memory_bytes=peak,
        available_memory_bytes=available,
        fits=refusal is None,
        device=device,
        precision=precision,
        trainable_parameters=trainable,
        total_parameters=entry.parameters,
        steps=steps,
        tokens=int(tokens),
        tokens_per_second=round(tokens / training, 2) if training > 0 else 0.0,
        duration_seconds=round(expected.total, 1),
        training_seconds=round(training, 1),
        phases=Phases.model_validate({k: round(v, 1) for k, v in expected}),
        calibrated=measured_runs > 0,
        measured_runs=measured_runs,
        memory=memory,
        step=step,
        messages=messages,
        refusal=refusal,
    )


def calibration_key(
    spec: TrainingBase, entry: CatalogEntry, hardware: Hardware, precision: str
) -> str:
    """The calibration key of a run of `spec` on `entry` here, in `precision`."""
    return CalibrationCache.key(
        hardware.fingerprint,
        entry.id,
        spec.method,
        precision,
        spec.gradient_checkpointing,
        recipe_for(spec).batching(spec).packed,
        spec.trainer,
        spec.processes,
    )


def run_shape(spec: TrainingBase) -> str:
    """What a run's figures depend on beyond its calibration key: its runs count as one shape."""
    lora = "" if spec.method == "full" else f", LoRA r={spec.lora_r}"
    return (
        f"batch {spec.batch_size} x {spec.gradient_accumulation}, max length "
        f"{spec.max_length}{lora}"
    )


def measured_run(
    spec: TrainingBase, modelled: Estimate, peak_bytes: int, tokens_per_second: float
) -> MeasuredRun:
    """A finished run's measured peak memory and speed, beside the model's figures for it
    (`modelled`: the estimate made without measured runs)."""
    return MeasuredRun(
        memory=Measured(
            shape=run_shape(spec),
            fixed=modelled.memory.fixed_bytes,
            varying=modelled.memory.varying_bytes,
            measured=peak_bytes,
        ),
        step_seconds=Measured(
            shape=run_shape(spec),
            fixed=modelled.step.fixed_seconds,
            varying=modelled.step.varying_seconds,
            measured=modelled.step.tokens / tokens_per_second,
        ),
    )


def _corrected(correction: Correction | None, fixed: float, varying: float) -> float:
    return correction.apply(fixed, varying) if correction else fixed + varying


def _peak_of(lengths: Lengths | None, hardware: Hardware, cache: CalibrationCache | None) -> PeakOf:
    """The peak memory of other settings (the refusal's advice tries them), each corrected by
    the runs measured with its own calibration key."""
    corrections: dict[str, Correction | None] = {}

    def peak(spec: TrainingBase, entry: CatalogEntry) -> int:
        precision = resolve_precision(spec.precision, hardware, spec.method)
        batch = micro_batches(spec, lengths)[1]
        memory = memory_breakdown(spec, entry, precision, batch, device_for(hardware))
        key = calibration_key(spec, entry, hardware, precision)
        if cache is not None and key not in corrections:
            corrections[key] = cache.corrections(key).memory
        return round(_corrected(corrections.get(key), memory.fixed_bytes, memory.varying_bytes))

    return peak
