"""What an export of a vision Gemma 3 adds to a text model's (`export.build` calls these):

* adapter, merged and full exports carry the image processor's files, so transformers'
  `AutoProcessor.from_pretrained` loads the export directory as it loads the base;
* an adapter records its base (`base_model_name_or_path`: the hub id, else the catalog id),
  not the server's cache path;
* the merged model's greedy answer to an image prompt is compared with base + adapter's;
* GGUF and Ollama exports get the projector file (`export.mmproj`) beside the text model, and
  their check runs an image through llama.cpp's multimodal path (`export.vision_check`), or,
  when llama.cpp refuses the projector, checks its structure and says so.

Imports torch lazily (workers only).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.export import mmproj, mmproj_gemma4, vision_check
from tuneforge.export.card import ollama_name
from tuneforge.models.vision import vision_info

#: The image processor's files (transformers' `Gemma3Processor` reads them with the tokenizer's).
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
#: Greedy tokens compared on the image prompt.
IMAGE_TOKENS = 16
#: How llama.cpp's logits move when the image changes (to its negative) may differ from how
#: transformers' move by at most this share of that move: a projector that loses or garbles the
#: image differs by about the image's whole effect, while a quantized text model's rounding
#: shifts the logits of both images alike.
MAX_IMAGE_DIFF_SHARE = 0.25
#: Below this largest logit change, the model does not look at its images (a zero projector):
#: nothing can tell whether the projector carries them.
MIN_IMAGE_EFFECT = 1e-3
Progress = Callable[[float, str], None]


def copy_processor_files(base_dir: Path, out: Path) -> None:
    """The base's image processor files, where `out` lacks them."""
    for name in PROCESSOR_FILES:
        if (base_dir / name).is_file() and not (out / name).exists():
            shutil.copyfile(base_dir / name, out / name)


def record_base(out: Path, base: str) -> None:
    """Point the adapter in `out` at its base by a name others can resolve."""
    file = out / "adapter_config.json"
    if not file.is_file():
        return
    config = json.loads(file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# -- merged --------------------------------------------------------------------------------------


def image_answer(model: Any, processor_dir: Path) -> dict[str, Any]:
    """`model`'s greedy answer to the check's image prompt (tokens and first logits), its
    inputs made by the processor in `processor_dir`."""
    from tuneforge.models.loading import model_format

    info = vision_info(processor_dir)
    assert info is not None
    image = vision_check.sample_image(info.image_size)
    prompt = vision_check.image_prompt(chat=model_format(processor_dir))
    inputs = vision_check.image_inputs(processor_dir, image, prompt)
    tokens, _gaps, logits = vision_check.greedy_answer(model, inputs, IMAGE_TOKENS)
    return {"tokens": tokens, "logits": logits}


def compare_image_answers(
    reference: dict[str, Any], merged: dict[str, Any], tolerance: float, *, exact: bool = True
) -> dict[str, Any]:
    """The merged model's answer to the image prompt next to base + adapter's. `exact`
    (float32): the greedy answers must be equal. In 16-bit types the merged weights are
    rounded, so an answer may part at a near tie: then only the logits must be within
    `tolerance`, and the parting is noted."""
    import numpy as np

    diff = float(np.abs(reference["logits"] - merged["logits"]).max())
    same = reference["tokens"] == merged["tokens"]
    problem, note = None, None
    if diff > tolerance:
        problem = (
            f"On an image prompt the merged model's logits differ from base + adapter by "
            f"{diff:.3g} (more than {tolerance:.3g})."
        )
    elif not same and exact:
        problem = (
            "On an image prompt the merged model answers differently from base + adapter "
            f"({merged['tokens']} instead of {reference['tokens']})."
        )
    elif not same:
        note = "the 16-bit merged weights' rounding parted the greedy answers at a near tie"
    return {
        "greedy_tokens": IMAGE_TOKENS,
        "same_answer": same,
        "max_abs_logit_diff": diff,
        "passed": problem is None,
        "problem": problem,
        "note": note,
    }


# -- gguf ----------------------------------------------------------------------------------------


def projector_type(quantization: str) -> mmproj.ProjectorType:
    """The projector's weight type for a GGUF export of `quantization`: f16, or f32 for f32
    (projectors are small; llama.cpp's converter writes them at 16 bits too)."""
    return "f32" if quantization == "f32" else "f16"


def projector_file_name(name: str, quantization: str) -> str:
    """`mmproj-<name>-<projector type>.gguf`: the name chat looks for beside the text model
    (agreed with the chat engine: a `.gguf` file whose name starts with `mmproj`)."""
    return f"mmproj-{ollama_name(name)}-{projector_type(quantization)}.gguf"


def write_projector(
    merged: Path, out: Path, name: str, quantization: str, progress: Progress
) -> Path:
    """The projector file of the vision model in `merged`, written into `out`."""
    target = out / projector_file_name(name, quantization)
    writer = mmproj_gemma4 if _is_gemma4(merged) else mmproj
    writer.convert_projector(
        merged, target, projector_type(quantization), name=f"{name} (image projector)",
        progress=progress,
    )  # fmt: skip
    return target


def _is_gemma4(model_dir: Path) -> bool:
    info = vision_info(model_dir)
    return info is not None and info.variable


def check_projector(
    model: Path,
    projector: Path,
    merged: Path,
    min_agreement: float,
    threads: int,
) -> tuple[dict[str, Any], list[str]]:
    """The projector's structure and, with llama.cpp, an image through it next to
    transformers: the verification's `image` entry and the problems found."""
    summary = mmproj.describe_projector(projector)
    result: dict[str, Any] = {"file": projector.name, **dataclasses.asdict(summary)}
    checker = mmproj_gemma4 if _is_gemma4(merged) else mmproj
    problems = [f"the projector's {p}" for p in checker.structure_problems(projector, merged)]
    result["structure_checked"] = True
    if problems:
        return result, problems
    if importlib.util.find_spec("llama_cpp") is None:
        result["note"] = (
            "llama.cpp is not installed here: the projector's structure was checked, the image "
            "comparison was skipped"
        )
        return result, problems
    try:
        found = vision_check.check_image(model, projector, merged, n=IMAGE_TOKENS, threads=threads)
    except vision_check.ProjectorNotLoaded as exc:
        result["loaded_in_llama_cpp"] = False
        result["note"] = (
            f"{exc} Its structure was checked instead (architecture, projector type, sizes, "
            "tokens per image, every tensor's shape): the image comparison did not run."
        )
        return result, problems
    share = found.forced / found.n
    result.update(
        loaded_in_llama_cpp=True,
        same_prompt_tokens=found.same_prompt,
        greedy_agreement=found.greedy,
        forced_agreement=found.forced,
        near_ties=found.near_ties,
        greedy_tokens=found.n,
        agreement_share=share,
        min_agreement_share=min_agreement,
        logit_diff=found.logit_diff,
        image_effect=found.image_effect,
        effect_diff=found.effect_diff,
        max_image_diff_share=MAX_IMAGE_DIFF_SHARE,
    )
    if not found.same_prompt:
        problems.append("llama.cpp tokenizes the text around the image differently")
    if share < min_agreement:
        problems.append(
            f"on an image prompt llama.cpp picks transformers' token at {found.forced} of "
            f"{found.n} steps (share {share:.2f} < {min_agreement})"
        )
    if found.image_effect < MIN_IMAGE_EFFECT:
        result["note"] = (
            "the model's answer does not depend on its image (its projector is zero), so the "
            "comparison cannot show that the projector carries the image"
        )
    elif found.effect_diff > MAX_IMAGE_DIFF_SHARE * found.image_effect:
        problems.append(
            f"changing the image moves llama.cpp's logits otherwise than transformers' (by up "
            f"to {found.effect_diff:.3g}, more than {MAX_IMAGE_DIFF_SHARE} of the move itself, "
            f"{found.image_effect:.3g}): the projector does not carry the image"
        )
    return result, problems
