"""Before a run: will it fit in memory, and how long will it take? Torch-free (the web process
calls it for every form change).

**Memory** (`memory_breakdown`) follows the SFT recipe (`training/runtime.py`,
`training/recipes/sft.py`, `training/components/`) and adds:

* weights: every parameter in the compute precision (bf16/fp16: 2 bytes, fp32: 4). QLoRA keeps
  the decoder's linear layers in 4 bits (~0.55 bytes per parameter with the quantisation
  constants) and the rest (embeddings, norms) in 16 bits. Full fine-tuning keeps fp32 master
  weights plus, under bf16/fp16 autocast, a 16-bit copy of each weight for the forward pass.
* trainable state: gradients (4 bytes) and AdamW's two moments (8) of every trained parameter,
  and the fp32 LoRA weights (4); on CUDA, AdamW's multi-tensor step adds a temporary (4).
* activations: what autograd keeps per token per layer (`activation_bytes_per_layer`, from
  Gemma 3's decoder layer): its RMSNorms work in fp32, attention keeps q, and k/v repeated to
  every query head, the MLP keeps four vectors of its width, and each adapter keeps a 16-bit
  copy of its input (PEFT casts it to fp32, autocast back for the matmul). Gradient
  checkpointing keeps one residual vector per layer instead, plus one layer's set while it is
  recomputed. A packed micro-batch is one row whose block-diagonal attention mask is a dense
  T x T matrix: transformers builds it (twice: sliding and full layers) and SDPA keeps a copy in
  the compute precision for every layer.
* logits: the head runs only at loss tokens, 512 rows at a time, each chunk's gradient computed
  at once, so no logits are kept: the peak is one chunk's working set (16-bit logits, their fp32
  copy turned into the gradient in place, its 16-bit cast: 8 x vocab bytes a row, 4 in fp32),
  the hidden-state gradient and, when the head trains (full fine-tuning), its fp32 gradient.
* allocator: freed memory glibc (or the CUDA caching allocator) keeps, measured (below).
* runtime: Python, PyTorch, transformers, PEFT and the worker once imported (~0.6 GB).

Memory is sized for a bad micro-batch, not an average one: the longest example (cut at
`max_length`) plus `batch_size - 1` examples at the 90th percentile; without packing, every row
padded to the longest. Without statistics every example is taken to be `max_length` long.

Checked against the peak RSS of 13 real training steps on this 2-core CPU (the recipe's own
`prepare_model`, `collate`, `causal_lm_loss` under its autocast, AdamW; Gemma 3 270M shapes;
LoRA r=8/16/64 with and without dropout, and full; bf16 and fp32; 256-2048 tokens, packed or
padded, with and without checkpointing): the estimate lands between 5% above and 1% below the
measured peak, less the imports. The allocator constants were fitted to those same runs.

**Speed**: the throughput the training worker measured (`CalibrationCache`, recorded at the end
of each run) for this machine, model, method, precision, checkpointing and packing when there is
one; else a FLOPs model (`flops_per_token`) divided by an assumed effective FLOP/s
(`hardware_flops`), scaled so that Gemma 3 270M + LoRA r=16 in bf16 on a 2-core AVX-512-BF16 CPU
gives the 165 tokens/s we measured. The estimate says which one it used (`calibrated`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel, Field

from tuneforge.hardware import Hardware
from tuneforge.models.catalog import Architecture, CatalogEntry
from tuneforge.training.spec import Method, TrainingBase

ResolvedPrecision = Literal["bf16", "fp16", "fp32"]
Device = Literal["cuda", "cpu"]

GB = 1e9
PRECISION_BYTES: dict[str, int] = {"bf16": 2, "fp16": 2, "fp32": 4}
QLORA_BYTES_PER_PARAMETER = 0.55
ADAM_BYTES_PER_PARAMETER = 16  # fp32 weight 4 + gradient 4 + AdamW moments 8
RUNTIME_OVERHEAD_BYTES = 600_000_000
LOGITS_CHUNK = 512  # rows per chunk, as in training/components/loss.py
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TIGHT_FRACTION = 0.85
#: Freed memory the allocator holds (peak RSS minus live tensors, measured on this machine;
#: it vanishes with glibc told to return freed blocks at once): about a tenth of the activations
#: and logits, and on a CPU several more layers' worth of activations when layers are recomputed
#: (gradient checkpointing) or tensors are fp32.
ALLOCATOR_SLACK = 0.10
CHECKPOINTING_SLACK_LAYERS = 5
FP32_SLACK_LAYERS = 7

# -- speed assumptions ---------------------------------------------------------------------------
#: The measurement the CPU model is scaled to: Gemma 3 270M, LoRA r=16 on all linear layers,
#: bf16 on 2 cores with a bf16 matrix unit, or fp32 on 2 AVX-512 cores without one, packed
#: micro-batches of 4 x 256 tokens with a quarter of the tokens carrying loss.
REFERENCE_TOKENS_PER_SECOND = 165.0
REFERENCE_CORES = 2
REFERENCE_ARCHITECTURE = Architecture(
    layers=18,
    hidden_size=640,
    intermediate_size=2048,
    attention_heads=4,
    kv_heads=1,
    head_dim=256,
    vocab_size=262_144,
)
REFERENCE_ROW_TOKENS = 1024
REFERENCE_LOSS_FRACTION = 0.25
#: Speed relative to the reference by (precision, CPU with a bf16 matrix unit). Without AMX, bf16
#: matrix products run at about 0.6x fp32 ones (measured on AVX-512 BF16: 65 vs 102 GFLOP/s).
CPU_PRECISION_SPEED = {("bf16", True): 1.0, ("fp32", True): 0.6, ("fp32", False): 1.0}
CPU_SLOW_PRECISION_SPEED = 0.6
#: Dense bf16/fp16 tensor-core TFLOP/s by product name; training reaches about a third of it.
GPU_PEAK_TFLOPS = {
    "H200": 990,
    "H100": 750,
    "A100": 312,
    "L40S": 362,
    "L40": 181,
    "A6000": 155,
    "A10G": 70,
    "A10": 125,
    "L4": 121,
    "4090": 165,
    "4080": 97,
    "3090": 71,
    "3080": 60,
    "V100": 125,
    "T4": 65,
}
GPU_DEFAULT_TFLOPS = 30
GPU_UTILISATION = 0.3
QLORA_SPEED = 0.7  # dequantising the 4-bit weights at every use


def device_for(hardware: Hardware) -> Device:
    """Where training runs: the first CUDA GPU when there is one, else the CPU."""
    return "cuda" if hardware.has_cuda else "cpu"


def resolve_precision(spec_precision: str, hardware: Hardware, method: Method) -> ResolvedPrecision:
    """The number format a run uses: an explicit choice as given; `auto` picks bf16 when the
    device supports it, else fp16 on a GPU (QLoRA computes in it too) and fp32 on a CPU."""
    if spec_precision in PRECISION_BYTES:
        return spec_precision  # type: ignore[return-value]
    if hardware.has_cuda:
        return "bf16" if hardware.gpus[0].bf16 else "fp16"
    if method == "qlora":  # cannot run here; size it as it would run on a modern GPU
        return "bf16"
    return "bf16" if hardware.cpu_bf16 else "fp32"


# -- the architecture ----------------------------------------------------------------------------


def linear_shapes(arch: Architecture) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer in one decoder layer."""
    d, f = arch.hidden_size, arch.intermediate_size
    q, kv = arch.attention_heads * arch.head_dim, arch.kv_heads * arch.head_dim
    return {
        "q_proj": (d, q),
        "k_proj": (d, kv),
        "v_proj": (d, kv),
        "o_proj": (q, d),
        "gate_proj": (d, f),
        "up_proj": (d, f),
        "down_proj": (f, d),
    }


def decoder_linear_parameters(arch: Architecture) -> int:
    """Weights of every decoder layer's linear layers (what a token's matmuls touch)."""
    return arch.layers * sum(i * o for i, o in linear_shapes(arch).values())


def embedding_parameters(arch: Architecture) -> int:
    """The token embedding, which Gemma ties to the output head."""
    return arch.vocab_size * arch.hidden_size


def lora_targets(arch: Architecture, targets: list[str]) -> tuple[list[str], list[str]]:
    """The adapted linear layers for `lora_target_modules` and the names that match none
    (PEFT matches a name against the end of each module's path)."""
    if "all-linear" in targets:
        return list(LINEAR_MODULES), []
    leaves = {target: target.rsplit(".", 1)[-1] for target in targets}
    known = {leaf for leaf in leaves.values() if leaf in LINEAR_MODULES}
    unknown = [target for target, leaf in leaves.items() if leaf not in LINEAR_MODULES]
    return sorted(known, key=LINEAR_MODULES.index), unknown


def lora_parameters(arch: Architecture, rank: int, targets: list[str]) -> int:
    """Trainable LoRA parameters: rank x (in + out) for each adapted linear layer."""
    shapes = linear_shapes(arch)
    modules, _ = lora_targets(arch, targets)
    return arch.layers * sum(rank * sum(shapes[name]) for name in modules)


def activation_bytes_per_layer(
    arch: Architecture,
    method: Method,
    precision: ResolvedPrecision,
    spec: TrainingBase,
    device: Device = "cpu",
) -> int:
    """Bytes autograd keeps per token in one decoder layer (see the module docstring)."""
    b = PRECISION_BYTES[precision]
    d, f = arch.hidden_size, arch.intermediate_size
    q, kv = arch.attention_heads * arch.head_dim, arch.kv_heads * arch.head_dim
    norms = 4 * 2 * 4 * d + 2 * 4 * (q + kv)  # 4 fp32 RMSNorms over d, q/k norms per head
    linear_inputs = b * (2 * d + q + f)  # shared q/k/v input, gate/up input, o input, down input
    attention = b * 4 * q  # q, k and v repeated to every query head, output
    mlp = b * 3 * f  # gate output, its GELU, up output
    adapters = 0
    if method != "full":
        shapes = linear_shapes(arch)
        modules, _ = lora_targets(arch, spec.lora_target_modules)
        # PEFT casts the input to the adapter's fp32 and autocast casts it back for the matmul,
        # which keeps that copy; in fp32 the adapter shares the base layer's input. Dropout
        # keeps its mask (a bool on CUDA, an fp32 tensor of the input's size on a CPU) and
        # gives the adapter an input of its own.
        copy = b if b < 4 else 0
        mask = 1 if device == "cuda" else 4
        per_input = mask + b if spec.lora_dropout > 0 else copy
        adapters = sum(per_input * shapes[m][0] + b * spec.lora_r for m in modules)
    return norms + linear_inputs + attention + mlp + adapters


class MemoryBreakdown(BaseModel):
    """Where a run's peak memory goes, in bytes."""

    weights_bytes: int = Field(description="The model's weights (frozen base or master copy).")
    trainable_state_bytes: int = Field(
        description="Gradients and AdamW moments of the trained weights, and the LoRA weights "
        "themselves (full fine-tuning's fp32 weights count as weights)."
    )
    activations_bytes: int = Field(
        description="What the forward pass keeps for the backward pass, attention masks included."
    )
    logits_bytes: int = Field(
        description="The output head's working space at the loss tokens (one chunk of logits)."
    )
    allocator_bytes: int = Field(
        description="Freed memory the allocator keeps rather than returning it (measured)."
    )
    runtime_bytes: int = Field(description="Python, PyTorch and libraries once running.")

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.trainable_state_bytes
            + self.activations_bytes
            + self.logits_bytes
            + self.allocator_bytes
            + self.runtime_bytes
        )


def memory_breakdown(
    spec: TrainingBase,
    entry: CatalogEntry,
    precision: ResolvedPrecision,
    batch: MicroBatch,
    device: Device = "cpu",
) -> MemoryBreakdown:
    """Peak memory of one training step on `batch` (see the module docstring)."""
    arch, total = entry.architecture, entry.parameters
    b = PRECISION_BYTES[precision]
    if spec.method == "full":
        weights = total * 4 + (total * b if b < 4 else 0)
        trainable = total
    elif spec.method == "qlora":
        quantised = min(decoder_linear_parameters(arch), total)
        weights = int(quantised * QLORA_BYTES_PER_PARAMETER) + (total - quantised) * 2
        trainable = lora_parameters(arch, spec.lora_r, spec.lora_target_modules)
    else:
        weights = total * b
        trainable = lora_parameters(arch, spec.lora_r, spec.lora_target_modules)
    per_layer = activation_bytes_per_layer(arch, spec.method, precision, spec, device)
    residual = 4 if spec.method == "full" else b
    if spec.gradient_checkpointing:
        per_token = arch.layers * residual * arch.hidden_size + per_layer
    else:
        per_token = arch.layers * per_layer
    masks = 0
    if batch.masked:  # two boolean masks, and SDPA keeps a converted copy for every layer
        layers = 1 if spec.gradient_checkpointing else arch.layers
        masks = batch.rows * batch.row_tokens**2 * (2 + layers * b)
    chunk = min(batch.loss_tokens, LOGITS_CHUNK) * arch.vocab_size * (4 + (2 * b if b < 4 else 0))
    logits = chunk + batch.loss_tokens * arch.hidden_size * b
    if spec.method == "full":
        logits += embedding_parameters(arch) * 4
    if spec.method == "full":  # the fp32 master weights are counted with the weights
        state = trainable * (ADAM_BYTES_PER_PARAMETER - 4)
        if device == "cuda":  # AdamW's multi-tensor step allocates a temporary per parameter
            state += trainable * 4
    else:
        state = trainable * ADAM_BYTES_PER_PARAMETER
    activations = batch.tokens * per_token + masks
    churn = activations + logits
    slack = ALLOCATOR_SLACK * churn
    if device == "cpu":  # glibc keeps more of what the recomputed layers and fp32 tensors free
        layers = CHECKPOINTING_SLACK_LAYERS if spec.gradient_checkpointing else 0
        layers += FP32_SLACK_LAYERS if precision == "fp32" else 0
        slack += layers * batch.tokens * per_layer
    return MemoryBreakdown(
        weights_bytes=int(weights),
        trainable_state_bytes=state,
        activations_bytes=int(activations),
        logits_bytes=int(logits),
        allocator_bytes=int(slack),
        runtime_bytes=RUNTIME_OVERHEAD_BYTES,
    )


# -- the data ------------------------------------------------------------------------------------


class Lengths(BaseModel):
    """The token lengths the estimate needs, from a dataset's statistics."""

    mean: float = Field(description="Mean example length (prompt + answer).")
    answer_mean: float = Field(description="Mean answer length.")
    p50: int = Field(description="Median example length.")
    p90: int = Field(description="90th percentile example length.")
    p95: int = Field(description="95th percentile example length.")
    max: int = Field(description="The longest example.")
    histogram: list[tuple[int, int, int]] = Field(
        default_factory=list, description="(start, end, count) bins of example lengths."
    )

    def truncated_mean(self, max_length: int) -> float:
        """Mean length once examples are cut at `max_length`."""
        if max_length >= self.max or not self.histogram:
            return min(self.mean, float(max_length))
        rows = sum(count for _, _, count in self.histogram) or 1
        cut = sum(
            count * min((start + end) / 2, max_length) for start, end, count in self.histogram
        )
        return min(self.mean, cut / rows)


def dataset_lengths(stats: Any) -> Lengths | None:
    """`Lengths` from `DatasetStats`, its JSON dump (a dataset row's `.stats`), or None."""
    if stats is None:
        return None
    data = stats.model_dump() if isinstance(stats, BaseModel) else dict(stats)
    total, answer = data.get("total_tokens") or {}, data.get("answer_tokens") or {}
    if not total.get("count"):
        return None
    return Lengths(
        mean=float(total["mean"]),
        answer_mean=float(answer.get("mean", total["mean"] / 2)),
        p50=int(total["p50"]),
        p90=int(total["p90"]),
        p95=int(total["p95"]),
        max=int(total["max"]),
        histogram=[(h["start"], h["end"], h["count"]) for h in total.get("histogram") or []],
    )


class MicroBatch(BaseModel):
    """The tokens one forward pass sees."""

    tokens: int = Field(description="Tokens in the micro-batch.")
    loss_tokens: int = Field(description="Tokens that carry loss (where the head runs).")
    rows: int = Field(description="Rows of the input (1 when packed).")
    row_tokens: int = Field(description="Tokens per row (the attention mask's side).")
    masked: bool = Field(
        description="Attention needs a mask: several examples share a packed row, or rows are "
        "padded (one example alone needs none)."
    )


def _loss_fraction(spec: TrainingBase, lengths: Lengths | None) -> float:
    if not getattr(spec, "assistant_only_loss", True):
        return 1.0
    if lengths is None or lengths.mean <= 0:
        return 0.5
    return min(1.0, lengths.answer_mean / lengths.mean)


def micro_batches(spec: TrainingBase, lengths: Lengths | None) -> tuple[MicroBatch, MicroBatch]:
    """(a typical micro-batch for speed, a bad one for peak memory)."""
    size, limit = spec.batch_size, spec.max_length
    packed = bool(getattr(spec, "packing", True))
    fraction = _loss_fraction(spec, lengths)
    if lengths is None:
        mean = longest = p90 = float(limit)
    else:
        mean = lengths.truncated_mean(limit)
        longest, p90 = float(min(lengths.max, limit)), float(min(lengths.p90, limit))

    def batch(tokens: float, row: float) -> MicroBatch:
        return MicroBatch(
            tokens=max(1, math.ceil(tokens)),
            loss_tokens=max(1, math.ceil(tokens * fraction)),
            rows=1 if packed else size,
            row_tokens=max(1, math.ceil(row)),
            masked=size > 1,
        )

    if packed:
        worst = min(size * limit, longest + (size - 1) * max(p90, mean))
        return batch(size * mean, size * mean), batch(worst, worst)
    return batch(size * mean, max(p90, mean)), batch(size * longest, longest)


# -- speed ---------------------------------------------------------------------------------------


def flops_per_token(
    arch: Architecture,
    method: Method,
    trainable: int,
    loss_fraction: float,
    context: float,
    gradient_checkpointing: bool,
) -> float:
    """Training FLOPs per token. Forward: 2 x decoder linear weights, plus attention over
    `context` tokens (4 x heads x head_dim x context per layer: the whole row when a mask is
    given, as the kernel then skips nothing; half of it when causal attention needs none).
    Backward: twice the forward for activations; weight gradients only for what
    trains (full: another 2 x weights; LoRA: 6 x adapter weights in all). The 262k-word head
    runs only on loss tokens (2 x vocab x hidden forward, as much again backward, and again for
    its weight gradient when it trains). Checkpointing repeats the forward."""
    linear = decoder_linear_parameters(arch)
    attention = 4 * arch.layers * arch.attention_heads * arch.head_dim * context
    head = 2 * embedding_parameters(arch)
    full = method == "full"
    flops = float(2 * linear + attention)  # forward
    flops += (4 if full else 2) * linear + 2 * attention + (0 if full else 6 * trainable)
    flops += loss_fraction * head * (3 if full else 2)
    if gradient_checkpointing:
        flops += 2 * linear + attention
    return float(flops)


def _reference_flops_per_second_per_core() -> float:
    trainable = lora_parameters(REFERENCE_ARCHITECTURE, 16, ["all-linear"])
    per_token = flops_per_token(
        REFERENCE_ARCHITECTURE,
        "lora",
        trainable,
        REFERENCE_LOSS_FRACTION,
        REFERENCE_ROW_TOKENS,
        False,
    )
    return per_token * REFERENCE_TOKENS_PER_SECOND / REFERENCE_CORES


def hardware_flops(hardware: Hardware, precision: ResolvedPrecision, method: Method) -> float:
    """Assumed effective training FLOP/s: CPUs scaled from our 2-core measurement by cores and
    precision; GPUs a third of their dense tensor-core peak (fp32 a quarter of that)."""
    if hardware.has_cuda:
        name = hardware.gpus[0].name.upper()
        peak = next((t for key, t in GPU_PEAK_TFLOPS.items() if key in name), GPU_DEFAULT_TFLOPS)
        flops = peak * 1e12 * GPU_UTILISATION * (0.25 if precision == "fp32" else 1.0)
        return flops * (QLORA_SPEED if method == "qlora" else 1.0)
    speed = CPU_PRECISION_SPEED.get((precision, hardware.cpu_bf16), CPU_SLOW_PRECISION_SPEED)
    return _reference_flops_per_second_per_core() * hardware.cores * speed


# -- measured speed ------------------------------------------------------------------------------


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
    ) -> str:
        return "|".join(
            [
                hardware_fingerprint,
                model_id,
                method,
                precision,
                f"gc={int(gradient_checkpointing)}",
                f"packing={int(packing)}",
            ]
        )

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

    def record(
        self, key: str, tokens_per_second: float, peak_memory_bytes: int | None = None
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
            entries[key] = {
                "tokens_per_second": speeds[-self.KEEP :],
                "peak_memory_bytes": peaks[-self.KEEP :],
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


# -- the estimate --------------------------------------------------------------------------------


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
    tokens_per_second: float = Field(description="Expected training speed.")
    duration_seconds: float = Field(
        description="Expected training time (the steps; evaluations and saving add to it)."
    )
    calibrated: bool = Field(
        description="The speed comes from runs measured on this machine; otherwise it is a rough "
        "guess from a FLOPs model."
    )
    measured_peak_memory_bytes: int | None = Field(
        default=None,
        description="Peak memory measured by earlier runs with this model, method and precision "
        "here (their batch size and length may differ).",
    )
    memory: MemoryBreakdown = Field(description="Where the peak memory goes.")
    messages: list[str] = Field(default_factory=list, description="Warnings worth reading.")
    refusal: str | None = Field(
        default=None,
        description="Why the run cannot start here and what to change, in order of effect "
        "(None when it can start).",
    )


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def _available(hardware: Hardware) -> int:
    if hardware.has_cuda:
        return hardware.gpus[0].memory_free_bytes
    return hardware.memory_available_bytes


def _peak(
    spec: TrainingBase, entry: CatalogEntry, lengths: Lengths | None, hardware: Hardware
) -> int:
    precision = resolve_precision(spec.precision, hardware, spec.method)
    batch = micro_batches(spec, lengths)[1]
    return memory_breakdown(spec, entry, precision, batch, device_for(hardware)).total_bytes


def _with(spec: TrainingBase, **update: Any) -> TrainingBase:
    return spec.model_copy(update=update)


def _levers(
    spec: TrainingBase,
    entry: CatalogEntry,
    lengths: Lengths | None,
    hardware: Hardware,
    budget: int,
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
        fitting = (
            v
            for v in values
            if _peak(_with(spec, **{field: v}), entry, lengths, hardware) <= budget
        )
        return next(fitting, values[-1] if values else None)

    size = largest_fitting("batch_size", [max(1, spec.batch_size >> i) for i in range(1, 11)])
    if size is not None:
        accumulation = math.ceil(spec.effective_batch / size)
        levers.append(
            (
                f"lower the batch size from {spec.batch_size} to {size} (with gradient "
                f"accumulation {accumulation} to keep {size * accumulation} examples per step)",
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
    spec: TrainingBase,
    entry: CatalogEntry,
    lengths: Lengths | None,
    hardware: Hardware,
    budget: int,
) -> CatalogEntry | None:
    from tuneforge.models.catalog import catalog

    fitting = [
        other
        for other in catalog().models
        if other.parameters < entry.parameters
        and not other.test_only
        and _peak(spec, other, lengths, hardware) <= budget
    ]
    return max(fitting, key=lambda m: m.parameters, default=None)


def _refusal(
    spec: TrainingBase,
    entry: CatalogEntry,
    lengths: Lengths | None,
    hardware: Hardware,
    peak: int,
    budget: int,
) -> str:
    """What to change, concretely: the single changes that are enough on their own, in order
    of effect; else the mildest combination that is; else a smaller model or machine."""
    where = "this GPU has" if hardware.has_cuda else "this machine has"
    head = f"Needs about {_gb(peak)}, {where} {_gb(budget)} free"
    model = _smaller_model(spec, entry, lengths, hardware, budget)
    smaller = f"pick a smaller model such as {model.name}" if model else ""
    levers = [
        (_peak(s, entry, lengths, hardware), text, s)
        for text, s in _levers(spec, entry, lengths, hardware, budget)
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
        if _peak(current, entry, lengths, hardware) <= budget:
            return f"{head}, and no single change is enough: {', and '.join(steps)}" + (
                f"; or {smaller}." if smaller else "."
            )
        levers = [(0, t, s) for t, s in _levers(current, entry, lengths, hardware, budget)]
    lightest = _gb(_peak(current, entry, lengths, hardware))
    model = _smaller_model(current, entry, lengths, hardware, budget)
    changes = f"Even if you {_and(steps)}, it" if steps else "It"
    instead = f"pick a smaller model such as {model.name}" if model else "pick a smaller model"
    device = "GPU memory" if hardware.has_cuda else "memory"
    return (
        f"{head}. {changes} needs about {lightest}: {instead}"
        f"{' with those changes' if model and steps else ''}, or a machine with more {device}."
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def estimate(
    spec: TrainingBase,
    entry: CatalogEntry,
    stats: Any,
    train_rows: int,
    hardware: Hardware,
    cache: CalibrationCache | None = None,
) -> Estimate:
    """Memory, speed and duration of training `entry` with `spec` on `train_rows` examples
    whose lengths `stats` describes (`DatasetStats`, its JSON dump, or None: examples taken to
    be `max_length` long), on `hardware`."""
    device = device_for(hardware)
    precision = resolve_precision(spec.precision, hardware, spec.method)
    lengths = dataset_lengths(stats)
    typical, worst = micro_batches(spec, lengths)
    memory = memory_breakdown(spec, entry, precision, worst, device)
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
    if not getattr(spec, "packing", True) and lengths:  # padding costs compute too
        tokens_computed = tokens * typical.row_tokens / max(per_example, 1)
    else:
        tokens_computed = tokens

    # -- how fast --------------------------------------------------------------------------------
    packing = bool(getattr(spec, "packing", True))
    measured = None
    if cache is not None:
        key = cache.key(
            hardware.fingerprint,
            entry.id,
            spec.method,
            precision,
            spec.gradient_checkpointing,
            packing,
        )
        measured = cache.get(key)
    if measured is not None:
        speed = measured.tokens_per_second
    else:
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
        speed *= tokens / tokens_computed if tokens_computed else 1.0
    duration = tokens / speed if speed > 0 else 0.0

    # -- warnings and refusals -------------------------------------------------------------------
    available = _available(hardware)
    peak = memory.total_bytes
    refusal = None
    if spec.method == "qlora" and not hardware.has_cuda:
        refusal = "QLoRA needs a CUDA GPU with bitsandbytes; this machine has none: choose LoRA."
    elif peak > available:
        refusal = _refusal(spec, entry, lengths, hardware, peak, available)
    elif peak > TIGHT_FRACTION * available:
        messages.append(
            f"Memory is tight: about {_gb(peak)} of {_gb(available)} free. Other programs "
            "starting now could make the run fail; gradient checkpointing or a smaller batch "
            "leaves room."
        )
    if entry.modality == "vision":
        media, encoders = (
            ("images and audio", "image and audio encoders are")
            if entry.family == "gemma-3n"
            else ("images", "image encoder is")
        )
        messages.append(
            f"{entry.name} also reads {media}; this recipe trains on text only. The {encoders} "
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
    if measured is None:
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
        tokens_per_second=round(speed, 2),
        duration_seconds=round(duration, 1),
        calibrated=measured is not None,
        measured_peak_memory_bytes=measured.peak_memory_bytes if measured else None,
        memory=memory,
        messages=messages,
        refusal=refusal,
    )
