"""Examples into model inputs: packed into one row without padding, or padded into rows.

Labels come out already shifted: `labels[r, t]` is the token the prediction made at position `t`
must produce, `IGNORE_INDEX` where there is none. Each example is shifted on its own, so no target
crosses from one example into the next.

A packed row carries no attention mask. Its position ids restart at 0 for each example, and
transformers (5.x, `masking_utils.find_packed_sequence_indices`) reads the restarts as sequence
boundaries and builds a block-diagonal mask, for full and sliding-window layers alike, with
`sdpa` and `eager` attention. It does so only when the attention mask is None AND the model runs
without a cache: Gemma 3's `use_cache` defaults to True, and with a cache the restarts are
ignored, so examples would silently attend to one another. Call the model with
`forward_kwargs(batch)`, which turns the cache off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from tuneforge.training.components.tokenize import IGNORE_INDEX, Example

PAD_ID = 0  # Gemma's <pad>


@dataclass
class Batch:
    """Model inputs, `[rows, T]` each; `attention_mask` is None for the packed form."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    labels: torch.Tensor
    tokens: int
    loss_tokens: int
    #: The examples' images, in the order of their tokens (a vision model's batch).
    images: tuple[bytes, ...] = ()
    #: More inputs of the model's forward (a vision model's pixel values or image features and
    #: token types: `components/vision.py` adds them).
    inputs: dict[str, Any] = field(default_factory=dict)

    def to(self, device: str | torch.device) -> Batch:
        """The same batch with its tensors on `device`."""
        mask = self.attention_mask
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            position_ids=self.position_ids.to(device),
            attention_mask=None if mask is None else mask.to(device),
            labels=self.labels.to(device),
            inputs={
                k: v.to(device) if isinstance(v, torch.Tensor) else v
                for k, v in self.inputs.items()
            },
        )


def _shifted(labels: Sequence[int]) -> list[int]:
    return [*labels[1:], IGNORE_INDEX]


def collate(examples: Sequence[Example], packing: bool) -> Batch:
    """With `packing`, one row of the examples end to end, the position ids restarting at 0 for
    each; without, one row per example, right-padded, with a 0/1 attention mask."""
    if not examples:
        raise ValueError("A batch needs at least one example.")
    if any(not example.input_ids for example in examples):
        raise ValueError("An example has no tokens.")
    lengths = [len(example.input_ids) for example in examples]
    labels = [_shifted(example.labels) for example in examples]
    if packing:
        input_ids = torch.tensor([[t for e in examples for t in e.input_ids]], dtype=torch.long)
        position_ids = torch.cat([torch.arange(n, dtype=torch.long) for n in lengths])[None]
        target = torch.tensor([[t for row in labels for t in row]], dtype=torch.long)
        attention_mask = None
    else:
        width = max(lengths)
        input_ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
        target = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, (example, shifted, n) in enumerate(zip(examples, labels, lengths, strict=True)):
            input_ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
            target[row, :n] = torch.tensor(shifted, dtype=torch.long)
            attention_mask[row, :n] = 1
        position_ids = torch.arange(width, dtype=torch.long).expand(len(examples), -1).clone()
    return Batch(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=attention_mask,
        labels=target,
        tokens=sum(lengths),
        loss_tokens=int((target != IGNORE_INDEX).sum()),
        images=tuple(image for example in examples for image in example.images),
    )


def forward_kwargs(batch: Batch) -> dict[str, Any]:
    """The keyword arguments to run a Gemma 3 model (or its decoder) on the batch: the cache off,
    so that a packed row gets its block-diagonal mask (see the module docstring), and a vision
    model's image inputs when the batch has them."""
    return {
        "input_ids": batch.input_ids,
        "position_ids": batch.position_ids,
        "attention_mask": batch.attention_mask,
        "use_cache": False,
        **batch.inputs,
    }


def batches(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> list[list[int]]:
    """The example indices of `order`, in that order, in micro-batches of `batch_size` (the last
    may be smaller). `lengths` holds every example's token count; each index must point into it."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    for index in order:
        if not 0 <= index < len(lengths):
            raise IndexError(f"Example index {index} is out of range for {len(lengths)} examples.")
    return [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
