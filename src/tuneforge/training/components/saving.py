"""A trained model on disk: the adapter (PEFT safetensors) or the full weights, with the
tokenizer (and a vision model's processor files) and the chat template of the base model's
format (Gemma 3's or Gemma 4's), as every recipe saves it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from tuneforge.models.loading import model_format
from tuneforge.training.spec import TrainingBase

#: The files copied from the base model beside the weights: the tokenizer's, and a vision
#: model's processor (so the fine-tune loads with `AutoProcessor` as its base does).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "processor_config.json",
)


def save_model(
    spec: TrainingBase,
    model: nn.Module,
    base_path: Path,
    output: Path,
    weights: dict[str, Any] | None = None,
) -> Path:
    """Write the trained model to `output` (replaced), with the tokenizer files of `base_path`.
    `weights`: a full fine-tune's whole weights when `model` holds only a shard of them."""
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    if spec.method == "full":
        model.save_pretrained(output, state_dict=weights)  # type: ignore[operator]
    else:
        peft_config: Any = model.peft_config["default"]  # type: ignore[index]
        peft_config.base_model_name_or_path = spec.base_model
        # Only the trained adapter (a run that continues another keeps it as its reference),
        # without the embeddings: they are frozen.
        model.save_pretrained(  # type: ignore[operator]
            output, selected_adapters=["default"], save_embedding_layers=False
        )
    for name in TOKENIZER_FILES:
        if (base_path / name).exists():
            shutil.copyfile(base_path / name, output / name)
    template = model_format(base_path).jinja
    (output / "chat_template.jinja").write_text(template, encoding="utf-8")
    return output
