"""What a training run does, as one typed spec per trainer (a discriminated union on `trainer`).

The fields carry descriptions, bounds and defaults: the REST schema, the UI form with its help
texts, the CLI's options and YAML configs and the presets all come from these models. Fields are
grouped (the `group` key of their JSON schema) so forms can lay them out in sections. Each
trainer's spec subclasses `TrainingBase` with its `trainer` literal and its own fields, and its
recipe registers it; `training/registry.py` makes `TrainingSpec`, the union of the registered ones.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from tuneforge.strict_numbers import Integer, Number, OptionalInteger

Method = Literal["lora", "qlora", "full"]
METHODS: tuple[Method, ...] = get_args(Method)
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Scheduler = Literal["linear", "cosine", "constant"]
Tracker = Literal["wandb", "mlflow"]
VisionPart = Literal["projector", "vision_tower"]

MAX_SAMPLE_PROMPTS = 5
SAMPLES_FROM_TEST = 3  # sample prompts taken from the test split when a run names none
MAX_DEVICES = 64
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")


def _group(name: str) -> dict[str, Any]:
    return {"group": name}


class TrainingBase(BaseModel):
    """Settings every trainer shares: what to train, how hard, and how to report."""

    model_config = ConfigDict(extra="forbid")

    # -- what ----------------------------------------------------------------------------------
    trainer: str = Field(
        description="The training method: `sft` (supervised fine-tuning) or another registered "
        "trainer; each has its own settings besides these.",
        json_schema_extra=_group("run"),
    )
    name: str | None = Field(
        default=None,
        max_length=200,
        description="A name for the run and the model it makes (default: `<model> on <dataset>`).",
        json_schema_extra=_group("run"),
    )
    base_model: str = Field(
        min_length=1,
        max_length=300,
        description="The model to fine-tune: a catalog id such as `gemma-3-270m`.",
        json_schema_extra=_group("run"),
    )
    dataset_id: str = Field(
        min_length=1,
        max_length=64,
        description="The processed dataset to learn from (its `train` split; `test` evaluates).",
        json_schema_extra=_group("run"),
    )
    method: Method = Field(
        default="lora",
        description="`lora` trains small adapter matrices beside the frozen model (fast, small "
        "files); `qlora` does the same over a 4-bit base (least memory; needs a CUDA GPU); `full` "
        "updates every weight (most memory, rarely better for small data).",
        json_schema_extra=_group("run"),
    )
    start_from: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Continue an earlier fine-tune instead of starting from the base: the id "
        "of one of your models made from the same base model (SFT, then DPO or GRPO from it, "
        "is the usual path). An adapter continues with `lora` or `qlora` and keeps its rank, "
        "alpha and target modules (set them as it has them); full weights continue with "
        "`full`. Empty: start from the base model.",
        json_schema_extra=_group("run"),
    )

    # -- optimisation --------------------------------------------------------------------------
    learning_rate: Number = Field(
        default=2e-4,
        gt=0,
        le=1,
        description="Step size of the AdamW optimizer at its peak. LoRA likes 1e-4 to 3e-4; full "
        "fine-tuning 1e-5 to 5e-5. Too high makes the loss jump; too low learns nothing.",
        json_schema_extra=_group("optimisation"),
    )
    epochs: Number = Field(
        default=3,
        gt=0,
        le=100,
        description="Passes over the training split (fractions allowed). Ignored when max steps "
        "is set.",
        json_schema_extra=_group("optimisation"),
    )
    max_steps: OptionalInteger = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Stop after this many optimizer steps, whatever the epochs say.",
        json_schema_extra=_group("optimisation"),
    )
    batch_size: Integer = Field(
        default=4,
        ge=1,
        le=1024,
        description="Examples per forward pass. More uses more memory and is faster per example.",
        json_schema_extra=_group("optimisation"),
    )
    gradient_accumulation: Integer = Field(
        default=1,
        ge=1,
        le=1024,
        description="Forward passes summed into one optimizer step: the effective batch is batch "
        "size x accumulation, at the memory cost of one batch.",
        json_schema_extra=_group("optimisation"),
    )
    max_length: Integer = Field(
        default=1024,
        ge=16,
        le=131_072,
        description="Longest example in tokens; longer ones are cut at the end. Memory grows with "
        "it, so set it near your data's 95th percentile.",
        json_schema_extra=_group("optimisation"),
    )
    scheduler: Scheduler = Field(
        default="cosine",
        description="How the learning rate moves after warmup: `cosine` decays smoothly to zero, "
        "`linear` decays in a straight line, `constant` stays at the peak.",
        json_schema_extra=_group("optimisation"),
    )
    warmup_ratio: Number = Field(
        default=0.03,
        ge=0,
        le=0.5,
        description="Fraction of the steps over which the learning rate climbs from zero to its "
        "peak, which steadies the first updates.",
        json_schema_extra=_group("optimisation"),
    )
    weight_decay: Number = Field(
        default=0.0,
        ge=0,
        le=1,
        description="AdamW weight decay: pulls trained weights towards zero to curb overfitting.",
        json_schema_extra=_group("optimisation"),
    )
    max_grad_norm: Number = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="Clip the gradient to this norm before each step (0 turns clipping off).",
        json_schema_extra=_group("optimisation"),
    )
    seed: Integer = Field(
        default=42,
        ge=0,
        le=2**31 - 1,
        description="Seeds data order, adapter initialisation and dropout: same seed, same run.",
        json_schema_extra=_group("optimisation"),
    )

    # -- LoRA ----------------------------------------------------------------------------------
    lora_r: Integer = Field(
        default=16,
        ge=1,
        le=1024,
        description="LoRA rank: the width of the adapter matrices. 8-32 suits most tasks; higher "
        "learns more and costs more.",
        json_schema_extra=_group("lora"),
    )
    lora_alpha: Integer = Field(
        default=32,
        ge=1,
        le=4096,
        description="LoRA scaling: updates are multiplied by alpha / rank (by alpha / sqrt(rank) "
        "with rsLoRA). Twice the rank is a good start.",
        json_schema_extra=_group("lora"),
    )
    lora_dropout: Number = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Dropout on the adapter input; 0.05-0.1 can help small datasets overfit less.",
        json_schema_extra=_group("lora"),
    )
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        min_length=1,
        max_length=64,
        description="Which layers get adapters: `all-linear` (every linear layer but the output "
        "head, the best default) or module names such as `q_proj`, `v_proj`.",
        json_schema_extra=_group("lora"),
    )
    use_rslora: StrictBool = Field(
        default=False,
        description="Rank-stabilised LoRA: scale by alpha / sqrt(rank), which keeps high ranks "
        "learning.",
        json_schema_extra=_group("lora"),
    )

    # -- hardware ------------------------------------------------------------------------------
    precision: Precision = Field(
        default="auto",
        description="Number format for the frozen weights and the arithmetic. `auto` picks bf16 "
        "where the CPU or GPU supports it, else fp16 on GPUs and fp32 on CPUs. Trained weights "
        "always stay in fp32.",
        json_schema_extra=_group("hardware"),
    )
    gradient_checkpointing: StrictBool = Field(
        default=False,
        description="Recompute activations in the backward pass instead of keeping them: about a "
        "third slower, much less memory for long examples.",
        json_schema_extra=_group("hardware"),
    )
    devices: Integer | Literal["auto"] = Field(
        default=1,
        description="Processes that train together, data-parallel: each takes its share of "
        "every step's examples (batch size is per device, so the effective batch is batch size "
        "x accumulation x devices) and their gradients are summed before each update. On CUDA "
        "one process per GPU (at most the GPUs there are; full fine-tuning shards the model "
        "over them with FSDP); `auto` takes every GPU, and 1 on a machine without one. On a "
        "CPU, more than 1 runs that many processes with the gloo backend: the same result as "
        "one process with the larger batch, but no faster (they share the cores). GRPO "
        "trains in one process so far.",
        json_schema_extra=_group("hardware"),
    )
    gpu_type: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="On a Ray cluster: the GPU type the run needs (Ray's accelerator type, "
        "such as `A100`, `H100` or `L4`); it then asks for GPUs of that type and waits for a "
        "node that has them. Unset: any GPU (local workers ignore it).",
        json_schema_extra=_group("hardware"),
    )
    use_unsloth: StrictBool = Field(
        default=True,
        description="On a CUDA GPU with Unsloth installed, use its faster kernels (ignored "
        "elsewhere).",
        json_schema_extra=_group("hardware"),
    )

    # -- evaluation and checkpoints ------------------------------------------------------------
    eval_every: Integer = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Evaluate on the test split every this many steps (0: only at the end). "
        "Each evaluation reports loss, perplexity, token accuracy and the sample answers.",
        json_schema_extra=_group("evaluation"),
    )
    eval_max_examples: Integer = Field(
        default=200,
        ge=1,
        le=100_000,
        description="Evaluate on at most this many test examples (the same ones every time).",
        json_schema_extra=_group("evaluation"),
    )
    check_examples: Integer = Field(
        default=12,
        ge=0,
        le=200,
        description="When the run has finished, the fine-tune and its base answer this many "
        "test examples (greedy, scored by the suite that fits the data), and the model page "
        "says what changed: `learned: 11/12 answers now match, base 0/12`. 0 skips the check; "
        "a dataset without a test split has none.",
        json_schema_extra=_group("evaluation"),
    )
    sample_answers: StrictBool = Field(
        default=True,
        description="Show sample answers at each evaluation: the model answers your sample "
        f"prompts, or the first {SAMPLES_FROM_TEST} prompts of the test split. Off: none, and "
        "each evaluation is quicker.",
        json_schema_extra=_group("evaluation"),
    )
    sample_prompts: list[str] = Field(
        default_factory=list,
        max_length=MAX_SAMPLE_PROMPTS,
        description="Up to 5 prompts the model answers at each evaluation, so you can read how "
        "it changes (empty: the first prompts of the test split).",
        json_schema_extra=_group("evaluation"),
    )
    sample_max_new_tokens: Integer = Field(
        default=64,
        ge=1,
        le=2048,
        description="Longest sample answer, in tokens.",
        json_schema_extra=_group("evaluation"),
    )
    early_stopping_patience: OptionalInteger = Field(
        default=None,
        ge=1,
        le=1000,
        description="Stop when the evaluation loss has not improved for this many evaluations "
        "(empty: never stop early).",
        json_schema_extra=_group("evaluation"),
    )
    checkpoint_every: Integer = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Save a resumable checkpoint every this many steps (one is also saved when "
        "you cancel).",
        json_schema_extra=_group("evaluation"),
    )
    keep_checkpoints: Integer = Field(
        default=2,
        ge=1,
        le=100,
        description="Keep only the newest this many checkpoints.",
        json_schema_extra=_group("evaluation"),
    )
    tracking: list[Tracker] = Field(
        default_factory=list,
        max_length=2,
        description="Also log to Weights & Biases or MLflow (keys from your stored secrets). "
        "TensorBoard logs are always written with the run.",
        json_schema_extra=_group("evaluation"),
    )

    @field_validator("sample_prompts")
    @classmethod
    def _prompts(cls, prompts: list[str]) -> list[str]:
        cleaned = [p.strip() for p in prompts if p.strip()]
        if any(len(p) > 4000 for p in cleaned):
            raise ValueError("a sample prompt is longer than 4000 characters")
        return cleaned

    @field_validator("lora_target_modules")
    @classmethod
    def _targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            if not MODULE_NAME.fullmatch(target):
                raise ValueError(f"{target!r} is not a module name")
        return targets

    @field_validator("devices")
    @classmethod
    def _devices(cls, devices: int | str) -> int | str:
        if isinstance(devices, int) and not 1 <= devices <= MAX_DEVICES:
            raise ValueError(f"devices must be `auto` or a whole number from 1 to {MAX_DEVICES}")
        return devices

    @property
    def processes(self) -> int:
        """The processes the spec trains in as far as it says (`auto` is decided by the worker's
        hardware: counted as one here)."""
        return self.devices if isinstance(self.devices, int) else 1

    @property
    def effective_batch(self) -> int:
        """Examples per optimizer step: batch size x accumulation x devices."""
        return self.batch_size * self.gradient_accumulation * self.processes


class SFTSpec(TrainingBase):
    """Supervised fine-tuning: learn to answer like the dataset's conversations."""

    trainer: Literal["sft"] = Field(
        default="sft",
        description="`sft`: supervised fine-tuning on conversations (prompt -> answer).",
        json_schema_extra=_group("run"),
    )
    packing: StrictBool = Field(
        default=True,
        description="Padding-free batches: no compute is spent on padding (on a GPU the examples "
        "are packed into one sequence, each seeing only itself). The same result, faster.",
        json_schema_extra=_group("optimisation"),
    )
    assistant_only_loss: StrictBool = Field(
        default=True,
        description="Learn only from the answers (the model's turns), not from the prompts.",
        json_schema_extra=_group("optimisation"),
    )
    train_vision: list[VisionPart] = Field(
        default_factory=list,
        max_length=2,
        description="For a vision model, the parts of its image side that learn besides the "
        "language model: `projector` (the small layer that maps image features into the "
        "language model; trained whole) and `vision_tower` (the image encoder: LoRA adapters on "
        "its linear layers, or all its weights with `full`; for the Gemma 4 12B, which has no "
        "image encoder, its patch projection: LoRA on it, or with `full` the whole patch "
        "embedding). Empty, the default: "
        "only the language model learns and the image side stays frozen, which is usually "
        "enough, and the cheapest (each image's features are computed once per run). Ignored "
        "for a text-only model.",
        json_schema_extra=_group("run"),
    )

    @field_validator("train_vision")
    @classmethod
    def _parts(cls, parts: list[VisionPart]) -> list[VisionPart]:
        return sorted(set(parts))  # type: ignore[return-value]


DPOLossType = Literal["sigmoid", "ipo", "simpo"]


def _preference_learning_rate() -> Any:
    return Field(
        default=5e-5,
        gt=0,
        le=1,
        description="Step size of the AdamW optimizer at its peak. Preference training nudges a "
        "model that already answers: with LoRA 2e-5 to 1e-4; full fine-tuning 5e-7 to 5e-6. "
        "Too high and the margin grows while the answers degrade.",
        json_schema_extra=_group("optimisation"),
    )


def _beta(description: str) -> Any:
    return Field(
        default=0.1, gt=0, le=100, description=description, json_schema_extra=_group("preference")
    )


class DPOSpec(TrainingBase):
    """Direct preference optimisation: prefer the chosen answer of each pair to the rejected."""

    trainer: Literal["dpo"] = Field(
        default="dpo",
        description="`dpo`: direct preference optimisation on pairs of a chosen and a rejected "
        "answer to the same prompt.",
        json_schema_extra=_group("run"),
    )
    learning_rate: Number = _preference_learning_rate()
    beta: Number = _beta(
        "How far the model may move from where it started (its reference): small values "
        "(0.05-0.1) let the preference win, large ones (0.5) keep it close. For `simpo`, the "
        "reward scale: 2 to 2.5 is usual."
    )
    loss_type: DPOLossType = Field(
        default="sigmoid",
        description="`sigmoid`: the DPO loss; `ipo`: holds the preference margin near 1/(2 beta) "
        "instead of pushing it ever wider (sturdier on small or noisy data); `simpo`: "
        "reference-free and length-normalised (no reference passes; set beta near 2).",
        json_schema_extra=_group("preference"),
    )
    label_smoothing: Number = Field(
        default=0.0,
        ge=0,
        lt=0.5,
        description="The share of pairs assumed to be labelled the wrong way round (robust "
        "DPO): 0.1 softens the loss when some preferences are noise. 0: trust every pair.",
        json_schema_extra=_group("preference"),
    )
    simpo_gamma: Number = Field(
        default=0.5,
        ge=0,
        le=10,
        description="SimPO's target margin between the chosen and rejected rewards (only with "
        "`simpo`).",
        json_schema_extra=_group("preference"),
    )


class ORPOSpec(TrainingBase):
    """Odds-ratio preference optimisation: SFT on the chosen answers plus a preference term."""

    trainer: Literal["orpo"] = Field(
        default="orpo",
        description="`orpo`: learns the chosen answers (as SFT does) while making the rejected "
        "ones less likely, in one stage and without a reference model.",
        json_schema_extra=_group("run"),
    )
    learning_rate: Number = _preference_learning_rate()
    beta: Number = _beta(
        "The weight of the preference (odds-ratio) term against the chosen answers' language "
        "loss (lambda in the paper): 0.1 is usual; higher leans harder on the preference."
    )


class KTOSpec(TrainingBase):
    """Kahneman-Tversky optimisation: learn from answers labelled good or bad, unpaired."""

    trainer: Literal["kto"] = Field(
        default="kto",
        description="`kto`: learns from single answers marked desirable or undesirable (a "
        "thumbs up or down), or from preference pairs split into both.",
        json_schema_extra=_group("run"),
    )
    learning_rate: Number = _preference_learning_rate()
    beta: Number = _beta(
        "How far the model may move from where it started (its reference): 0.1 is usual; "
        "larger keeps it closer."
    )
    desirable_weight: Number = Field(
        default=1.0,
        gt=0,
        le=100,
        description="Weight of the desirable answers' loss. With more undesirable than "
        "desirable examples, raise it so that weight x count is about even (up to 4:3).",
        json_schema_extra=_group("preference"),
    )
    undesirable_weight: Number = Field(
        default=1.0,
        gt=0,
        le=100,
        description="Weight of the undesirable answers' loss; raise it when they are the fewer.",
        json_schema_extra=_group("preference"),
    )
