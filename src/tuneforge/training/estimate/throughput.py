"""How fast will a run train? A step takes a fixed time (`STEP_SECONDS`) plus its tokens' FLOPs
(`flops_per_token`) at an assumed effective FLOP/s (`hardware_flops`), scaled so that Gemma 3
270M + LoRA r=16 in bf16 on a 2-core AVX-512-BF16 CPU gives the 165 tokens/s we measured. Runs
measured on this machine correct both parts (`correction`).
"""

from __future__ import annotations

from tuneforge.hardware import Hardware
from tuneforge.models.catalog import Architecture
from tuneforge.training.estimate.architecture import (
    decoder_linear_parameters,
    embedding_parameters,
    lora_parameters,
)
from tuneforge.training.estimate.memory import ResolvedPrecision
from tuneforge.training.spec import Method

STEP_SECONDS = 0.5  # an optimizer step's fixed cost (python, the optimizer, LoRA's hooks)
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
