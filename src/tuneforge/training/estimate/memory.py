"""Will a run fit? Peak memory of one training step, torch-free (the web process calls it for
every form change).

The model follows the SFT recipe (`training/runtime.py`, `training/recipes/sft.py`,
`training/components/`) and adds:

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
* allocator: freed memory glibc (or the CUDA caching allocator) keeps, measured (`ALLOCATOR_SLACK`).
* runtime: Python, PyTorch, transformers, PEFT and the worker once imported (~0.6 GB).

Memory is sized for a bad micro-batch, not an average one (`batches.micro_batches`).

Checked against the peak RSS of 13 real training steps on this 2-core CPU (the recipe's own
`prepare_model`, `collate`, `causal_lm_loss` under its autocast, AdamW; Gemma 3 270M shapes;
LoRA r=8/16/64 with and without dropout, and full; bf16 and fp32; 256-2048 tokens, packed or
padded, with and without checkpointing): the estimate lands between 5% above and 1% below the
measured peak, less the imports. The allocator constants were fitted to those same runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tuneforge.hardware import Hardware
from tuneforge.models.catalog import Architecture, CatalogEntry
from tuneforge.training.estimate.architecture import (
    decoder_linear_parameters,
    embedding_parameters,
    linear_shapes,
    lora_parameters,
    lora_targets,
)
from tuneforge.training.estimate.batches import MicroBatch
from tuneforge.training.spec import Method, TrainingBase

ResolvedPrecision = Literal["bf16", "fp16", "fp32"]
Device = Literal["cuda", "cpu"]

GB = 1e9
PRECISION_BYTES: dict[str, int] = {"bf16": 2, "fp16": 2, "fp32": 4}
QLORA_BYTES_PER_PARAMETER = 0.55
ADAM_BYTES_PER_PARAMETER = 16  # fp32 weight 4 + gradient 4 + AdamW moments 8
RUNTIME_OVERHEAD_BYTES = 600_000_000
LOGITS_CHUNK = 512  # rows per chunk, as in training/components/loss.py
#: Freed memory the allocator holds (peak RSS minus live tensors, measured on this machine;
#: it vanishes with glibc told to return freed blocks at once): about a tenth of the activations
#: and logits, and on a CPU several more layers' worth of activations when layers are recomputed
#: (gradient checkpointing) or tensors are fp32.
ALLOCATOR_SLACK = 0.10
CHECKPOINTING_SLACK_LAYERS = 5
FP32_SLACK_LAYERS = 7


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


def in_gb(n: float) -> str:
    """Bytes as gigabytes, for messages: "6.8 GB"."""
    return f"{n / GB:.1f} GB"


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
    images_bytes: int = Field(
        default=0,
        description="A vision model's image side: the cached features of the images while it "
        "is frozen, or the image encoder's activations when it trains (`estimate/images.py`).",
    )

    @property
    def fixed_bytes(self) -> int:
        """The part a run's shape (batch size, max length) does not change."""
        return self.weights_bytes + self.trainable_state_bytes + self.runtime_bytes

    @property
    def varying_bytes(self) -> int:
        """The part that grows with the micro-batch (and, for images, with the dataset)."""
        return self.images_bytes + self.activations_bytes + self.logits_bytes + self.allocator_bytes

    @property
    def total_bytes(self) -> int:
        return self.fixed_bytes + self.varying_bytes


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
