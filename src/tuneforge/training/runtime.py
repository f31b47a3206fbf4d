"""Device, precision and the trainable model: LoRA, QLoRA or full weights; Unsloth on CUDA.

The frozen base is loaded in the compute precision (bf16 where the hardware supports it); the
trained weights (LoRA matrices, or every weight in full fine-tuning) stay in fp32 and the
arithmetic runs under autocast. QLoRA loads the base in 4 bits through bitsandbytes and needs
CUDA; Unsloth replaces the loading and the adapters on CUDA when it is installed and allowed.

A run that continues an earlier fine-tune (`start_from`) is given that model's directory: full
weights load as the model; an adapter directory (PEFT's layout, its config naming the local base,
see `name_base`) loads over its base and trains on from its weights, keeping its rank and alpha.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from tuneforge.errors import InvalidInput
from tuneforge.hardware import detect_hardware
from tuneforge.training.components.packing import Batch, collate
from tuneforge.training.components.tokenize import Example
from tuneforge.training.estimate import resolve_precision
from tuneforge.training.spec import TrainingBase

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ADAPTER_CONFIG = "adapter_config.json"
#: The trained adapter's name in a PEFT model, and the frozen copy of a continued adapter's
#: starting weights that a run's reference computes with.
TRAINED, REFERENCE = "default", "reference"


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

    def each(self, items: Sequence[ItemT], run: Callable[[ItemT], ResultT]) -> list[ResultT]:
        """`run(item)` (an example's forward and backward passes, or a forward pass alone) for
        every item, the results in the items' order.

        On a CPU the per-example passes run `parallel` at a time, each on its share of the
        cores: an example's small matrix products keep one core busy but two only partly (every
        operation waits for both), so two examples on a core each train about 1.2x faster than
        one after the other on both (measured on 2 cores). Gradients are the same sums, added in
        another order. `run` must touch nothing model-wide (no adapter switching).
        """
        if self.parallel <= 1 or len(items) <= 1:
            return [run(item) for item in items]
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // self.parallel))
        try:
            with ThreadPoolExecutor(min(self.parallel, len(items))) as pool:
                return list(pool.map(run, items))
        finally:
            torch.set_num_threads(threads)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)


def runtime_for(spec: TrainingBase, per_example: bool | None = None) -> Runtime:
    """Where and how `spec` trains on this machine, or a clear error when it cannot.
    `per_example`: the recipe runs each example (a pair, say) as passes of its own on a CPU,
    so two can run at once (default: the spec's `packing`, which SFT's per-example passes
    follow)."""
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
        and spec.start_from is None  # a continued adapter loads through PEFT
        and importlib.util.find_spec("unsloth") is not None
    )
    # Examples in parallel only where nothing random happens in a pass (dropout would draw from
    # one generator in an order that changes from run to run, and resumes would not reproduce).
    if per_example is None:
        per_example = bool(getattr(spec, "packing", False))  # per-example passes (`forwards`)
    parallel = 2 if not cuda and per_example and spec.lora_dropout == 0 else 1
    # Two passes at once need two cores, and two threads PyTorch may use (a process that was
    # given one core's worth by OMP_NUM_THREADS keeps to it, as does each of several training
    # processes on the cores they share).
    if min(detect_hardware().cores, torch.get_num_threads()) < 2:
        parallel = 1
    return Runtime("cuda" if cuda else "cpu", precision, unsloth, parallel)


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def is_adapter(path: Path) -> bool:
    """Whether `path` holds a LoRA adapter (PEFT's layout) rather than a whole model."""
    return (path / ADAPTER_CONFIG).is_file()


def name_base(adapter: Path, base: Path) -> None:
    """Make a stored adapter directory loadable here: its config names `base`, the local
    directory of its base model (PEFT's convention for a local adapter)."""
    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(base)
    (adapter / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")


def prepare_model(
    spec: TrainingBase, path: Path, runtime: Runtime, reference: bool = False
) -> nn.Module:
    """The model ready to train: adapters added (LoRA/QLoRA) or every weight trainable (full).

    `path` is a base model, or the model a run continues: full weights, or an adapter whose
    training goes on. With `reference` (a recipe that compares with a reference model), a
    continued adapter is also loaded a second time, frozen, for `reference_of` to switch to.
    A vision model trains its language model, and the parts of its image side the spec's
    `train_vision` names (`components/vision.py`); the rest of it is frozen.
    """
    from tuneforge.models.vision import vision_info

    torch.manual_seed(spec.seed)  # adapter initialisation
    start = path if is_adapter(path) else None
    if start is not None and spec.method == "full":
        raise InvalidInput(
            "The model this run continues is a LoRA adapter: continue it with method lora.",
            {"fields": ["method", "start_from"]},
        )
    vision = vision_info(base_path(path)) is not None
    parts: list[str] = list(getattr(spec, "train_vision", [])) if vision else []
    if runtime.unsloth and not vision:  # Unsloth's language-model path knows no images
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
    base = _base_of(start) if start is not None else path
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, **options)
    if spec.method != "qlora":
        model.to(runtime.device)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if spec.method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        if vision:
            from tuneforge.training.components.vision import freeze_image_side

            freeze_image_side(model, parts, full=True)
        result: nn.Module = model
        return result
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=spec.gradient_checkpointing
        )
    if start is not None:
        model = _continued(spec, model, start, reference)
    else:
        targets: Any = spec.lora_target_modules
        saved = None
        if vision:
            from tuneforge.training.components.vision import lora_targets, modules_to_save

            targets, saved = lora_targets(targets, parts, model), modules_to_save(parts, model)
        elif targets == ["all-linear"]:
            targets = "all-linear"
        config = LoraConfig(
            r=spec.lora_r,
            lora_alpha=spec.lora_alpha,
            lora_dropout=spec.lora_dropout,
            target_modules=targets,
            modules_to_save=saved,
            use_rslora=spec.use_rslora,
            task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, config)
        except ValueError as exc:  # e.g. a target module the model does not have
            raise InvalidInput(f"Cannot add LoRA adapters: {exc}") from exc
    if vision:
        from tuneforge.training.components.vision import freeze_image_side

        freeze_image_side(model, parts, full=False)
    for _, parameter in trainable_parameters(model):
        parameter.data = parameter.data.float()
    adapted: nn.Module = model
    return adapted


def base_path(path: Path) -> Path:
    """The base model's directory of `path`: itself, or the base an adapter names."""
    return _base_of(path) if is_adapter(path) else path


def _base_of(adapter: Path) -> Path:
    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return Path(str(config.get("base_model_name_or_path") or ""))


def _continued(spec: TrainingBase, model: Any, start: Path, reference: bool) -> Any:
    """`model` with the adapter in `start`, trainable; its rank, alpha and scaling are the
    adapter's, so the spec must say the same (its dropout may change)."""
    from peft import LoraConfig, PeftModel

    config = LoraConfig.from_pretrained(str(start))
    kept = {"lora_r": config.r, "lora_alpha": config.lora_alpha, "use_rslora": config.use_rslora}
    differ = [name for name, value in kept.items() if getattr(spec, name) != value]
    if differ:
        settings = ", ".join(f"{name} {kept[name]}" for name in differ)
        raise InvalidInput(
            f"The adapter this run continues keeps its shape: set {settings} as it has them.",
            {"fields": differ},
        )
    config.lora_dropout = spec.lora_dropout
    continued = PeftModel.from_pretrained(
        model, str(start), adapter_name=TRAINED, config=config, is_trainable=True
    )
    if reference:
        continued.load_adapter(str(start), adapter_name=REFERENCE, is_trainable=False)
    return continued


@contextlib.contextmanager
def reference_of(model: nn.Module) -> Iterator[None]:
    """Compute with a LoRA model as the run's reference, without gradients: the adapter's
    starting weights when the run continues one (`prepare_model(reference=True)`), else the
    base model with the adapters switched off. The switch is model-wide: no training pass
    may run meanwhile."""
    peft: Any = model
    with torch.no_grad():
        if REFERENCE not in getattr(peft, "peft_config", {}):
            with peft.disable_adapter():
                yield
            return
        peft.set_adapter(REFERENCE, inference_mode=True)
        try:
            yield
        finally:
            peft.set_adapter(TRAINED)


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
