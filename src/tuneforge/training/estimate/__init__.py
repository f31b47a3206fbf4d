"""Before a run: will it fit in memory, and how long will it take? Torch-free (the web process
calls it for every form change).

* `memory`: the peak memory of one training step (weights, trainable state, activations,
  logits, allocator, runtime), checked against real runs.
* `batches`: the dataset's token lengths and the micro-batches a run makes of them.
* `architecture`: parameter counts from a catalog model's shapes.
* `throughput`: a model of the speed (a step's fixed cost and its tokens' FLOPs), scaled to a
  measured run.
* `calibration`: runs measured on this machine (peak memory, step time, phase timings), kept
  beside the models' figures for them.
* `correction`: the factors those runs put on the models' parts, for any batch size and length.
* `phases`: the time around the steps (starting, evaluating, sampling, checkpoints, saving).
* `advice`: what to change when a run does not fit.
* `forecast`: `estimate()`, which puts them together with the warnings worth reading.
"""

from tuneforge.training.estimate.architecture import (
    LINEAR_MODULES,
    decoder_linear_parameters,
    embedding_parameters,
    linear_shapes,
    lora_parameters,
    lora_targets,
)
from tuneforge.training.estimate.batches import Lengths, MicroBatch, dataset_lengths, micro_batches
from tuneforge.training.estimate.calibration import CalibrationCache, Corrections, MeasuredRun
from tuneforge.training.estimate.correction import Correction, Measured, fit
from tuneforge.training.estimate.forecast import (
    Estimate,
    StepModel,
    calibration_key,
    estimate,
    measured_run,
)
from tuneforge.training.estimate.memory import (
    Device,
    MemoryBreakdown,
    ResolvedPrecision,
    activation_bytes_per_layer,
    device_for,
    memory_breakdown,
    resolve_precision,
)
from tuneforge.training.estimate.phases import Phases, Timings
from tuneforge.training.estimate.throughput import flops_per_token, hardware_flops

__all__ = [
    "LINEAR_MODULES",
    "CalibrationCache",
    "Correction",
    "Corrections",
    "Device",
    "Estimate",
    "Lengths",
    "Measured",
    "MeasuredRun",
    "MemoryBreakdown",
    "MicroBatch",
    "Phases",
    "ResolvedPrecision",
    "StepModel",
    "Timings",
    "activation_bytes_per_layer",
    "calibration_key",
    "dataset_lengths",
    "decoder_linear_parameters",
    "device_for",
    "embedding_parameters",
    "estimate",
    "fit",
    "flops_per_token",
    "hardware_flops",
    "linear_shapes",
    "lora_parameters",
    "lora_targets",
    "measured_run",
    "memory_breakdown",
    "micro_batches",
    "resolve_precision",
]
