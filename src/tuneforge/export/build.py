"""Making an export's files in a worker, and proving they work before anyone downloads them.

* `adapter`: the fine-tune's PEFT files, tokenizer and chat template, with a model card.
* `merged`: base + adapter merged (PEFT's `merge_and_unload`) and saved as safetensors in the
  base's dtype; reloaded with plain transformers, its logits on fixed prompts are compared with
  base + adapter (`max_abs_logit_diff`).
* `gguf`: the merged model converted in-process (`export/gguf.py`), K-quants by llama.cpp's
  quantiser; read back with the `gguf` package, then run in llama.cpp on fixed prompts and its
  tokens compared with transformers' (`forced_agreement`, `greedy_agreement`, of
  `GREEDY_TOKENS` per prompt; see `gguf_check.Check`).
* `ollama`: the GGUF with a Modelfile.

A vision Gemma 3 adds its image processor's files to adapter and merged exports, an image prompt
to the merge's check, and to GGUF and Ollama exports the `mmproj` projector file beside the text
model, checked with an image through llama.cpp's multimodal path (`export.vision_export`).

A verification below its threshold raises `VerificationFailed` carrying the numbers: the export
is then marked failed with them, and its files are never published.

Imports torch, transformers and PEFT (lazily): workers only.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.export import gguf, gguf_check, vision_export
from tuneforge.export.card import CardFacts, model_card, modelfile, ollama_name
from tuneforge.export.spec import IN_PROCESS, UNQUANTIZED
from tuneforge.models.chat_template import chat_format
from tuneforge.models.vision import vision_info

Progress = Callable[[float, str], None]

GREEDY_TOKENS = 16
#: The share of the 3 x 16 steps at which llama.cpp must pick transformers' token (each step
#: given transformers' answer so far; near ties excused, see `gguf_check.Check`). A broken
#: conversion agrees on almost none. Measured on Gemma 3 270M and a LoRA fine-tune of it: f16
#: and q8_0 48/48 for both; q4_k_m 48 and 38; q5_0 46 and 40; q4_0 43 and 22 (the legacy types
#: re-quantise the 270M's already 4-bit weights, exactly as llama.cpp's own quantiser does).
MIN_AGREEMENT: dict[str, float] = {
    "f32": 0.9,
    "f16": 0.9,
    "bf16": 0.9,
    "q8_0": 0.85,
    "q6_k": 0.85,
    "q5_k_m": 0.6,
    "q4_k_m": 0.6,
    "q5_0": 0.6,
    "q4_0": 0.35,
}
#: The merged model's logits may differ from base + adapter by rounding only: in float32 by
#: summation order (1e-3), in 16-bit types by the merged weights' rounding (relative to the
#: largest logit).
FLOAT32_TOLERANCE = 1e-3
HALF_RELATIVE_TOLERANCE = 0.02
GENERATION_FILES = ("generation_config.json",)


class VerificationFailed(Exception):
    """The export was made but does not behave like the fine-tuned model."""

    def __init__(self, message: str, verification: dict[str, Any]) -> None:
        super().__init__(message)
        self.verification = verification


@dataclass(frozen=True)
class Plan:
    """What to build and from what (all local paths)."""

    format: str
    quantization: str | None
    model_kind: str  # adapter | full
    source: Path  # the fine-tune's files (adapter, or full weights)
    base_dir: Path  # the base model's transformers directory
    base_dtype: str
    vocab_gguf: Path  # the bundled GGUF: Gemma's vocabulary for tokenizer.json-only models
    facts: CardFacts
    threads: int = 2


def build(plan: Plan, out: Path, progress: Progress) -> dict[str, Any]:
    """Write the export's files into the empty directory `out`; returns the verification."""
    from tuneforge.models.loading import model_format

    chat = model_format(plan.base_dir)  # the fine-tune speaks its base model's chat format
    plan = dataclasses.replace(plan, facts=dataclasses.replace(plan.facts, chat_format=chat.name))
    verification: dict[str, Any] = {}
    if plan.format == "adapter":
        _copy_files(plan.source, out)
        vision_export.record_base(out, plan.facts.base_hub_id or plan.facts.base_model)
        if vision_info(plan.base_dir) is not None:
            vision_export.copy_processor_files(plan.base_dir, out)
        progress(0.9, "writing the model card")
    elif plan.format == "merged":
        verification["merge"] = merge(plan, out, progress)
    else:
        with tempfile.TemporaryDirectory(prefix="tuneforge-merge-") as work:
            merged = Path(work) / "merged"
            merged.mkdir()
            verification["merge"] = merge(plan, merged, progress)
            verification["gguf"] = _gguf(plan, merged, Path(work), out, progress)
    files = sorted(p.name for p in out.iterdir())
    if plan.format == "ollama":
        files.append("Modelfile")
    facts = dataclasses.replace(plan.facts, files=[*files, "README.md"])
    (out / "README.md").write_text(model_card(facts), encoding="utf-8")
    return verification


def _copy_files(source: Path, out: Path) -> None:
    """The fine-tune's files, without the hidden bookkeeping a local copy may carry (such as
    the inference cache's `.complete` marker)."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and not any(
            part.startswith(".") for part in path.relative_to(source).parts
        ):
            target = out / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


# -- merged ----------------------------------------------------------------------------------


def _logits(model: Any, prompts: list[list[int]]) -> list[Any]:
    import torch

    with torch.inference_mode():
        return [model(torch.tensor([ids])).logits[0].float() for ids in prompts]


def merge(plan: Plan, out: Path, progress: Progress) -> dict[str, Any]:
    """Merge the fine-tune into its base, save it in `out`, reload it and compare logits."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, plan.base_dtype)
    prompts = gguf_check.prompt_ids(plan.source)
    if plan.model_kind == "full":
        progress(0.1, "copying the fully fine-tuned weights")
        _copy_files(plan.source, out)
        _copy_generation_config(plan.base_dir, out)
        if vision_info(plan.base_dir) is not None:
            vision_export.copy_processor_files(plan.base_dir, out)
        return {"kind": "full", "note": "a full fine-tune's weights need no merge"}
    from peft import PeftModel

    progress(0.05, f"loading {plan.facts.base_model} with the adapter")
    vision = vision_info(plan.base_dir) is not None
    base = AutoModelForCausalLM.from_pretrained(plan.base_dir, dtype=dtype)
    tuned: Any = PeftModel.from_pretrained(base, plan.source)
    tuned.eval()
    reference = _logits(tuned, prompts)
    image_reference = vision_export.image_answer(tuned, plan.base_dir) if vision else None
    progress(0.2, "merging the adapter into the weights")
    merged = tuned.merge_and_unload()
    merged.save_pretrained(out)
    del merged, tuned, base
    for path in plan.source.iterdir():  # tokenizer files and chat template
        if path.is_file() and not path.name.startswith("adapter_"):
            shutil.copyfile(path, out / path.name)
    _copy_generation_config(plan.base_dir, out)
    if vision:
        vision_export.copy_processor_files(plan.base_dir, out)
    progress(0.3, "reloading the merged model to compare its logits with base + adapter")
    reloaded: Any = AutoModelForCausalLM.from_pretrained(out, dtype=dtype)
    reloaded.eval()
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(_logits(reloaded, prompts), reference, strict=True)
    )
    scale = max(float(r.abs().max()) for r in reference)
    tolerance = FLOAT32_TOLERANCE if dtype == torch.float32 else HALF_RELATIVE_TOLERANCE * scale
    result: dict[str, Any] = {
        "dtype": plan.base_dtype,
        "prompts": len(prompts),
        "max_abs_logit_diff": diff,
        "tolerance": tolerance,
        "passed": diff <= tolerance,
    }
    problems = (
        []
        if diff <= tolerance
        else [
            f"The merged model's logits differ from base + adapter by {diff:.3g} "
            f"(more than {tolerance:.3g})."
        ]
    )
    if image_reference is not None:
        progress(0.35, "comparing the merged model's answer to an image with base + adapter")
        image = vision_export.compare_image_answers(
            image_reference,
            vision_export.image_answer(reloaded, out),
            tolerance,
            exact=dtype == torch.float32,
        )
        result["image"] = image
        if not image["passed"]:
            problems.append(image["problem"])
    del reloaded
    if problems:
        result["passed"] = False
        raise VerificationFailed(" ".join(problems), {"merge": result})
    return result


def _copy_generation_config(base_dir: Path, out: Path) -> None:
    for name in GENERATION_FILES:
        if (base_dir / name).exists() and not (out / name).exists():
            shutil.copyfile(base_dir / name, out / name)


# -- gguf --------------------------------------------------------------------------------------


def gguf_file_name(name: str, quantization: str) -> str:
    return f"{ollama_name(name)}-{quantization}.gguf"


def _gguf(plan: Plan, merged: Path, work: Path, out: Path, progress: Progress) -> dict[str, Any]:
    quantization = plan.quantization or "q8_0"
    target = out / gguf_file_name(plan.facts.name, quantization)
    vision = vision_info(merged) is not None
    # The projector is checked beside an unquantized text model (`check_gguf`): kept from the
    # K-quants' first step, or written for a vision model's in-process quantisation.
    f16 = work / "f16.gguf"

    def convert(path: Path, outtype: str, share: float) -> None:
        gguf.convert(
            merged,
            path,
            outtype,  # type: ignore[arg-type]
            name=plan.facts.name,
            progress=lambda fraction, message: progress(0.4 + share * fraction, message),
            vocab_gguf=plan.vocab_gguf,
        )

    if quantization in IN_PROCESS:
        convert(target, quantization, 0.3)
        if vision and quantization not in UNQUANTIZED:
            convert(f16, "f16", 0.0)
    else:
        convert(f16, "f16", 0.3)
        progress(0.7, f"quantising to {quantization} with llama.cpp")
        gguf.quantize(f16, target, quantization, threads=plan.threads)  # type: ignore[arg-type]
    projector = None
    if vision:
        progress(0.72, "writing the image encoder and projector (mmproj)")
        projector = vision_export.write_projector(
            merged, out, plan.facts.name, quantization, lambda _f, message: progress(0.75, message)
        )
    if plan.format == "ollama":
        chat = chat_format(plan.facts.chat_format)
        text = modelfile(target.name, projector.name if projector else None, chat)
        (out / "Modelfile").write_text(text, encoding="utf-8")
    progress(0.8, "reading the GGUF back")
    beside = f16 if projector is not None and f16.exists() else None
    try:
        return check_gguf(target, merged, quantization, plan.threads, progress, projector, beside)
    finally:
        f16.unlink(missing_ok=True)


def check_gguf(
    path: Path,
    merged: Path,
    quantization: str,
    threads: int,
    progress: Progress,
    projector: Path | None = None,
    unquantized: Path | None = None,
) -> dict[str, Any]:
    """Read `path` back and, with llama.cpp installed, compare its greedy tokens with
    transformers' on the merged model; with a `projector` (a vision model), check it and
    compare an image prompt too (`vision_export.check_projector`), beside `unquantized` (an
    f16 copy of a quantized `path`) when given. The text check measures the quantized text
    model's rounding; the image check asks whether the projector carries the image, which a
    small model's rounding after an image can hide (measured on the tiny Gemma 4: at q8_0 its
    logits after the image prompt move by 2.4, as much as a third of the image's own effect)."""
    summary = gguf.describe(path)
    result: dict[str, Any] = {"file": path.name, **dataclasses.asdict(summary)}
    problems = []
    expected = gguf.architecture_of(merged)
    if summary.architecture != expected:
        problems.append(f"its architecture is {summary.architecture!r}, not {expected}")
    if not summary.has_tokenizer:
        problems.append("it carries no tokenizer")
    if not summary.has_chat_template:
        problems.append("it carries no chat template")
    if importlib.util.find_spec("llama_cpp") is None:
        result["greedy_agreement"] = None
        result["note"] = "llama.cpp is not installed here: the comparison was skipped"
    elif not problems:
        progress(0.85, "running the GGUF in llama.cpp and comparing with transformers")
        found = gguf_check.check(path, merged, n=GREEDY_TOKENS, threads=threads)
        share = sum(found.forced) / (GREEDY_TOKENS * len(found.forced))
        result.update(
            greedy_agreement=found.greedy,
            forced_agreement=found.forced,
            near_ties=found.near_ties,
            greedy_tokens=GREEDY_TOKENS,
            agreement_share=share,
            min_agreement_share=MIN_AGREEMENT[quantization],
        )
        if share < MIN_AGREEMENT[quantization]:
            problems.append(
                f"llama.cpp picks transformers' token at {sum(found.forced)} of "
                f"{GREEDY_TOKENS * len(found.forced)} steps (share {share:.2f} < "
                f"{MIN_AGREEMENT[quantization]})"
            )
    if projector is not None and not problems:
        progress(0.9, "running an image through llama.cpp's multimodal path")
        text_model = unquantized or path
        image, found_problems = vision_export.check_projector(
            text_model,
            projector,
            merged,
            MIN_AGREEMENT["f16" if unquantized else quantization],
            threads,
        )
        if unquantized is not None:
            image["text_model"] = "f16 (the projector is checked beside the unquantized model)"
        image["passed"] = not found_problems
        result["image"] = image
        problems += found_problems
    result["passed"] = not problems
    if problems:
        raise VerificationFailed(
            f"The GGUF failed its check: {'; '.join(problems)}.", {"gguf": result}
        )
    return result


def manifest(out: Path) -> list[dict[str, Any]]:
    """Every file of the export with its size and CRC-32 (for ZIP downloads)."""
    from tuneforge.export.zipstream import crc32_file

    return [
        {"name": p.relative_to(out).as_posix(), "size": p.stat().st_size, "crc32": crc32_file(p)}
        for p in sorted(out.rglob("*"))
        if p.is_file()
    ]
