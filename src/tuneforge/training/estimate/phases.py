"""The time a run spends around its steps: starting (the worker, torch, the model and the data),
evaluating, answering the sample prompts, saving checkpoints, and saving the model at the end.

Each is measured by earlier runs on this machine where there are any (`Timings`, kept by the
calibration cache with the speed), or worked out from constants measured on a 2-core CPU with
tiny-random-gemma3 and Gemma 3 270M otherwise.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tuneforge.models.catalog import CatalogEntry
from tuneforge.training.spec import SAMPLES_FROM_TEST, TrainingBase

#: The metric a train job reports at step 0: the whole run's expected seconds, as estimated when
#: it first started (the run page shows it beside the time it took).
ESTIMATE_METRIC = "estimate/duration_seconds"

# -- first-run constants (this machine: 2 cores, AVX-512) ---------------------------------------
START_SECONDS = 12.0  # a worker process: python, torch, transformers, the tokenizer, the data
LOAD_BYTES_PER_SECOND = 250e6  # reading and preparing the base model's weights
GENERATE_SECONDS_PER_TOKEN = 0.1  # a generated token's fixed cost (transformers' generate)
GENERATE_BYTES_PER_SECOND = 8e9  # ... plus reading every weight once per token
EVAL_PASS_SECONDS = 2.0  # an evaluation pass's fixed cost (batches, switching modes)
EVAL_SPEEDUP = 2.0  # a forward-only pass over a token takes this much less than training on it
CHECKPOINT_SECONDS = 0.5  # writing and storing one checkpoint, plus its bytes
SAVE_SECONDS = 3.0  # writing the model with its tokenizer (33 MB) and storing it, plus its bytes
WRITE_BYTES_PER_SECOND = 200e6


class Timings(BaseModel):
    """Phase timings measured by earlier runs (means; None where none was measured)."""

    load_seconds: float | None = None
    eval_seconds_per_token: float | None = None
    sample_seconds_per_token: float | None = None
    checkpoint_seconds: float | None = None
    save_seconds: float | None = None


class Phases(BaseModel):
    """Expected seconds of each phase of a run."""

    loading: float = Field(description="Starting the worker, loading the model and the data.")
    training: float = Field(description="The optimizer steps.")
    evaluating: float = Field(description="The evaluation passes over the test split.")
    sampling: float = Field(description="Answering the sample prompts at each evaluation.")
    checkpoints: float = Field(description="Saving checkpoints to resume from.")
    saving: float = Field(description="Saving and storing the model at the end.")

    @property
    def total(self) -> float:
        return (
            self.loading
            + self.training
            + self.evaluating
            + self.sampling
            + self.checkpoints
            + self.saving
        )


def evaluations(spec: TrainingBase, steps: int, test_rows: int) -> int:
    """Evaluation passes of a run: before the first step (when evaluating periodically), every
    `eval_every` steps, and at the end."""
    if steps <= 0:
        return 0
    periodic = (steps - 1) // spec.eval_every if spec.eval_every else 0
    before = 1 if spec.eval_every and test_rows > 0 else 0
    return before + periodic + 1


def phases(
    spec: TrainingBase,
    entry: CatalogEntry,
    steps: int,
    training_seconds: float,
    tokens_per_second: float,
    example_tokens: float,
    test_rows: int,
    trainable_parameters: int,
    measured: Timings | None = None,
) -> Phases:
    """The seconds of each phase of `steps` steps taking `training_seconds`, at
    `tokens_per_second`, with examples `example_tokens` long and `test_rows` test examples."""
    measured = measured or Timings()
    weight_bytes = entry.parameters * 2  # bf16 or fp16 on disk
    count = evaluations(spec, steps, test_rows)
    eval_tokens = min(test_rows, spec.eval_max_examples) * example_tokens
    eval_per_token = measured.eval_seconds_per_token or 1 / (
        EVAL_SPEEDUP * max(tokens_per_second, 1e-9)
    )
    sampled = len(spec.sample_prompts) or min(SAMPLES_FROM_TEST, test_rows)
    prompts = sampled if spec.sample_answers else 0
    sample_per_token = measured.sample_seconds_per_token or (
        GENERATE_SECONDS_PER_TOKEN + weight_bytes / GENERATE_BYTES_PER_SECOND
    )
    # LoRA checkpoints hold the adapter and its optimizer state; full ones every weight
    state_bytes = trainable_parameters * 12
    checkpoints = max(steps - 1, 0) // spec.checkpoint_every if spec.checkpoint_every else 0
    model_bytes = weight_bytes if spec.method == "full" else trainable_parameters * 4
    return Phases(
        loading=measured.load_seconds or START_SECONDS + weight_bytes / LOAD_BYTES_PER_SECOND,
        training=training_seconds,
        evaluating=count * eval_tokens * eval_per_token
        + (0 if measured.eval_seconds_per_token or not eval_tokens else count * EVAL_PASS_SECONDS),
        sampling=count * prompts * spec.sample_max_new_tokens * sample_per_token,
        checkpoints=checkpoints
        * (
            measured.checkpoint_seconds or CHECKPOINT_SECONDS + state_bytes / WRITE_BYTES_PER_SECOND
        ),
        saving=measured.save_seconds or SAVE_SECONDS + model_bytes / WRITE_BYTES_PER_SECOND,
    )
