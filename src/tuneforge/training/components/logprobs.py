"""The log-probability a model gives each answer after its prompt, with the head only on answers.

Preference training compares how likely a model finds two answers (DPO, ORPO), or one answer
against a reference (KTO), and the preference-accuracy evaluation asks which of two answers a
model prefers. All need one number per completion: the summed log-probability of its answer's
tokens (and their count, for a mean). The decoder runs over prompt and answer; the output head,
most of a small Gemma's compute, projects only the positions that predict an answer token, through
the chunked, fused cross-entropy of `loss.py` (a sequence's summed log-probability is minus its
summed cross-entropy), so no `[tokens, vocabulary]` logits outlive a chunk, in the backward pass
either.

On a CPU each completion is its own forward pass, without padding; elsewhere the completions are
packed into one row, each attending only to itself (`packing.py`). Run it under the runtime's
autocast; under `torch.no_grad()` for reference values and evaluations. For a LoRA model's base
(a reference without a second copy in memory), call it inside PEFT's `model.disable_adapter()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tuneforge.training.components.completions import Completion
from tuneforge.training.components.loss import causal_lm, head_loss, softcap_of
from tuneforge.training.components.packing import collate, forward_kwargs
from tuneforge.training.components.tokenize import IGNORE_INDEX, Example


@dataclass
class AnswerLogProbs:
    """Per completion: the summed log-probability of its answer tokens (differentiable when
    computed with gradients) and how many there are."""

    sums: torch.Tensor  # [n] fp32
    tokens: torch.Tensor  # [n] long, on the same device

    @property
    def means(self) -> torch.Tensor:
        """The mean log-probability per answer token of each completion."""
        return self.sums / self.tokens.to(self.sums.dtype)


def _example(completion: Completion) -> Example:
    ignored = [IGNORE_INDEX] * len(completion.prompt_ids)
    return Example(
        input_ids=completion.prompt_ids + completion.answer_ids,
        labels=ignored + completion.answer_ids,
    )


def answer_logprobs(
    model: nn.Module,
    completions: Sequence[Completion],
    device: str = "cpu",
    packed: bool | None = None,
) -> AnswerLogProbs:
    """The summed log-probabilities of `completions`' answers under `model` (a
    `Gemma3ForCausalLM` or a PEFT model wrapping one) on `device`: in one packed pass when
    `packed` (default: on any device but a CPU), else one pass each."""
    if not completions:
        raise ValueError("answer_logprobs needs at least one completion.")
    base = causal_lm(model)
    softcap = softcap_of(base)
    if packed is None:
        packed = device != "cpu"
    groups = [list(completions)] if packed else [[c] for c in completions]
    sums: list[torch.Tensor] = []
    for group in groups:
        batch = collate([_example(c) for c in group], packing=True).to(device)
        hidden = base.model(**forward_kwargs(batch)).last_hidden_state[0]
        targets = batch.labels[0]
        start = 0
        for completion in group:
            # The positions that predict the answer: from the prompt's last token on.
            first = start + len(completion.prompt_ids) - 1
            rows = slice(first, first + len(completion.answer_ids))
            loss, _ = head_loss(base.lm_head, hidden[rows], targets[rows], softcap)
            sums.append(-loss)
            start += completion.tokens
    tokens = torch.tensor([len(c.answer_ids) for c in completions], device=sums[0].device)
    return AnswerLogProbs(sums=torch.stack(sums), tokens=tokens)
