"""Completions of many prompts at once, for training on what the model itself writes (GRPO).

`complete` left-pads the prompts into one batch and runs transformers' `generate` in eval mode:
sampled (temperature, nucleus) `generations` times per prompt, or greedy once. The draw is
seeded by the caller (a function of the run's seed and step), so a resumed run writes the same
completions as the uninterrupted one would have. A completion stops at the end of its turn
(`<end_of_turn>`; Gemma 4: `<turn|>`) or `<eos>`; the stop token belongs to it (the model learns
to end its answer) and what `generate` pads after it does not. The batch keeps the token ids
and masks that `training/components/policy.py` scores, and the decoded texts that the graders
read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from tuneforge.models.chat_template import format_of_tokenizer
from tuneforge.training.runtime import Runtime, evaluating

EOS = "<eos>"
PAD_ID = 0  # Gemma's <pad>


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn: `greedy`, or sampled with `temperature` and nucleus `top_p`."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False


@dataclass
class Completions:
    """`generations` completions of each prompt, a prompt's completions next to each other."""

    prompt_ids: torch.Tensor  # [n, p] each prompt left-padded, repeated per completion
    prompt_mask: torch.Tensor  # [n, p] 1 on prompt tokens, 0 on padding
    completion_ids: torch.Tensor  # [n, c]
    completion_mask: torch.Tensor  # [n, c] 1 up to and including the stop token
    texts: list[str]  # decoded, special tokens and surrounding space removed
    ended: list[bool]  # stopped at a stop token (False: ran out of tokens)

    @property
    def lengths(self) -> list[int]:
        """Tokens in each completion (its stop token included)."""
        return [int(n) for n in self.completion_mask.sum(-1)]

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)


def stop_ids(tokenizer: Tokenizer) -> list[int]:
    """The tokens that end a completion: the end of a turn in the tokenizer's chat format
    (`<end_of_turn>`, `<turn|>`), and `<eos>`."""
    found = [tokenizer.token_to_id(t) for t in format_of_tokenizer(tokenizer).stop_tokens]
    return [token for token in found if token is not None]


def left_padded(prompts: Sequence[Sequence[int]], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts as one batch padded on the left (so every completion starts at the same
    column), and its attention mask."""
    width = max(len(ids) for ids in prompts)
    ids = torch.full((len(prompts), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(list(prompt))
            mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


@contextlib.contextmanager
def dense_head_input(model: nn.Module) -> Iterator[None]:
    """Give the output head inputs with ordinary strides while generating.

    `generate` first projects the prompt's last position, a slice `[n, 1, hidden]` whose batch
    stride is the whole prompt's. With a frozen (no-grad) bf16 weight, torch 2.13 on CPU
    multiplies such an input by copying the transposed weight of Gemma's 262,144-word head
    first: 20 s for one prompt, minutes for a batch (measured on this CPU). A copy of the
    small input with ordinary strides takes the fast path.
    """
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, nn.Module):
        yield
        return

    def dense(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        first = args[0]
        return (first.clone(memory_format=torch.contiguous_format), *args[1:])

    handle = head.register_forward_pre_hook(dense)
    try:
        yield
    finally:
        handle.remove()


def complete(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    generations: int,
    sampling: Sampling,
    runtime: Runtime,
    seed: int | None = None,
) -> Completions:
    """`generations` completions of every prompt (token ids, as `encode_prompt` makes them),
    drawn with `sampling` after seeding torch with `seed`."""
    if not prompts:
        raise ValueError("complete() needs at least one prompt.")
    if sampling.greedy and generations != 1:
        raise ValueError("Greedy decoding writes one completion per prompt.")
    stops = stop_ids(tokenizer)
    ids, mask = left_padded(prompts, runtime.device)
    options: dict[str, object] = {"do_sample": False}
    if not sampling.greedy:
        # top_k 0: no cut besides the nucleus (a model's generation config may set one).
        options = {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": 0,
        }
    if seed is not None:
        torch.manual_seed(seed)
    with evaluating(model), runtime.autocast(), dense_head_input(model):
        output = model.generate(  # type: ignore[operator]
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=sampling.max_new_tokens,
            num_return_sequences=generations,
            eos_token_id=stops,
            pad_token_id=PAD_ID,
            use_cache=True,
            **options,
        )
    new = output[:, ids.shape[1] :]
    is_stop = torch.isin(new, torch.tensor(stops, device=new.device))
    # Keep each completion up to its first stop token, that token included.
    before_stop = torch.cumsum(is_stop.long(), dim=1) - is_stop.long() == 0
    completion_mask = before_stop.long()
    rows = new.tolist()
    lengths = completion_mask.sum(-1).tolist()
    texts = [
        tokenizer.decode(row[:length], skip_special_tokens=True).strip()
        for row, length in zip(rows, lengths, strict=True)
    ]
    return Completions(
        prompt_ids=ids.repeat_interleave(generations, dim=0),
        prompt_mask=mask.repeat_interleave(generations, dim=0),
        completion_ids=new.masked_fill(completion_mask == 0, PAD_ID),
        completion_mask=completion_mask,
        texts=texts,
        ended=is_stop.any(dim=1).tolist(),
    )
