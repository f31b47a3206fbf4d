"""Device, precision and the trainable model: LoRA, QLoRA or full weights; Unsloth on CUDA.

The frozen base is loaded in the compute precision (bf16 where the hardware supports it); the
trained weights (LoRA matrices, or every weight in full fine-tuning) stay in fp32 and the
arithmetic runs under autocast. QLoRA loads the base in 4 bits through bitsandbytes and needs
CUDA; Unsloth replaces the loading and the adapters on CUDA when it is installed and allowed.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.errors import InvalidInput
from tuneforge.hardware import detect_hardware
from tuneforge.training.components.packing import Batch, collate
from tuneforge.training.components.tokenize import Example
from tuneforge.training.estimate import resolve_precision
from tuneforge.training.spec import TrainingBase

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Runtime:
    device: str
    precision: str  # bf16 | fp16 | fp32: the arithmetic
    unsloth: bool
    #: Examples whose forward and backward passes run at once on a CPU, sharing its cores (1:
    #: one after the other, each on every core).
    parallel: int = 1

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]

    def forwards(self, examples: Sequence[Example], packing: bool) -> list[Batch]:
        """The forward passes that run `examples` (a micro-batch), none of them padded when
        `packing`: on a GPU one packed row (each example attending only to itself); on a CPU
        one pass per example, which is faster there (a packed row's block-diagonal mask makes
        attention dense, while CPU matrix products are already efficient at a few hundred
        rows). All three forms give the same loss and gradients."""
        if not packing:
            return [collate(examples, packing=False).to(self.device)]
        if self.device == "cpu":
            return [collate([example], packing=True) for example in examples]
        return [collate(examples, packing=True).to(self.device)]

    def backward_each(self, batches: Sequence[Batch], run: Callable[[Batch], float]) -> float:
        """`run(batch)` (a forward and a backward pass) for every batch, summing what it returns.

        On a CPU the per-example passes run `parallel` at a time, each on its share of the
        cores: an example's small matrix products keep one core busy but two only partly (every
        operation waits for both), so two examples on a core each train about 1.2x faster than
        one after the other on both (measured on 2 cores). The gradients are the same sums,
        added in another order.
        """
        if self.parallel <= 1 or len(batches) <= 1:
            return sum(run(batch) for batch in batches)
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // self.parallel))
        try:
            with ThreadPoolExecutor(min(self.parallel, len(batches))) as pool:
                return sum(pool.map(run, batches))
        finally:
            torch.set_num_threads(threads)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)


def runtime_for(spec: TrainingBase) -> Runtime:
    """Where and how `spec` trains on this machine, or a clear error when it cannot."""
    cuda = torch.cuda.is_available()
    if spec.method == "qlora":
        if not cuda:
            raise InvalidInput(
                "QLoRA needs a CUDA GPU (it loads the model in 4 bits with bitsandbytes); this "
                "machine has none. Choose LoRA: on a CPU it is the fastest method."
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise InvalidInput("QLoRA needs bitsandbytes: pip install 'tuneforge[gpu]'.")
    if spec.precision == "fp16" and not cuda:
        raise InvalidInput("fp16 training needs a CUDA GPU; on a CPU choose bf16 or fp32.")
    precision = resolve_precision(spec.precision, detect_hardware(), spec.method)
    unsloth = (
        cuda
        and spec.use_unsloth
        and spec.method != "full"
        and importlib.util.find_spec("unsloth") is not None
    )
    # Examples in parallel only where nothing random happens in a pass (dropout would draw from
    # one generator in an order that changes from run to run, and resumes would not reproduce).
    packing = bool(getattr(spec, "packing", False))  # per-example passes (see `forwards`)
    parallel = 2 if not cuda and packing and spec.lora_dropout == 0 else 1
    if detect_hardware().cores < 2:
        parallel = 1
    return Runtime("cuda" if cuda else "cpu", precision, unsloth, parallel)


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def prepare_model(spec: TrainingBase, path: Path, runtime: Runtime) -> nn.Module:
    """The model ready to train: adapters added (LoRA/QLoRA) or every weight trainable (full)."""
    torch.manual_seed(spec.seed)  # adapter initialisation
    if runtime.unsloth:
        return _unsloth(spec, path, runtime)
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {"attn_implementation": "sdpa"}
    if spec.method == "qlora":
        from transformers import BitsAndBytesConfig

        options["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=runtime.dtype,
        )
        options["device_map"] = {"": 0}
    # Full fine-tuning keeps fp32 master weights; adapters train over a base in the compute dtype.
    dtype = torch.float32 if spec.method == "full" else runtime.dtype
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **options)
    if spec.method != "qlora":
        model.to(runtime.device)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if spec.method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        result: nn.Module = model
        return result
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=spec.gradient_checkpointing
        )
    targets = spec.lora_target_modules
    config = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        use_rslora=spec.use_rslora,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:  # e.g. a target module the model does not have
        raise InvalidInput(f"Cannot add LoRA adapters: {exc}") from exc
    for _, parameter in trainable_parameters(model):
        parameter.data = parameter.data.float()
    adapted: nn.Module = model
    return adapted


def _unsloth(spec: TrainingBase, path: Path, runtime: Runtime) -> nn.Module:
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(
        model_name=str(path),
        max_seq_length=spec.max_length,
        dtype=runtime.dtype,
        load_in_4bit=spec.method == "qlora",
    )
    targets = spec.lora_target_modules
    result: nn.Module = FastLanguageModel.get_peft_model(
        model,
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=LINEAR_MODULES if targets == ["all-linear"] else targets,
        use_gradient_checkpointing="unsloth" if spec.gradient_checkpointing else False,
        use_rslora=spec.use_rslora,
        random_state=spec.seed,
    )
    return result


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients, restoring training mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
