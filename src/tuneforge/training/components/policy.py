"""The policy-gradient objective of GRPO: group advantages, token log-probabilities, clipped loss.

Each prompt is answered `G` times; a completion's advantage is its reward minus the mean reward
of its group, divided by the group's standard deviation (Bessel-corrected, plus 1e-4) when
`scale` (without it, the raw difference: Dr. GRPO). Nothing is learnt from a group whose
completions all scored alike.

The loss per completion token t, with the probability ratio r_t = p(t) / p_old(t) against the
policy that wrote the completion and the advantage A of its completion, is

    -min(r_t A, clip(r_t, 1 - epsilon, 1 + epsilon) A)  +  beta KL_t

where KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1 estimates the divergence from the
reference model (k3, always >= 0). `grpo` averages it over each completion's tokens, then over
completions; `dr_grpo` sums it over tokens and divides by completions x the longest completion
allowed, so long completions are not favoured by the averaging.

`token_logprobs` runs the decoder once over prompt and completion (left-padded prompts; the
positions count from each sequence's first real token) and projects only the completion tokens
through the output head, a chunk of rows at a time, recomputing each chunk's logits in the
backward pass instead of keeping the `[tokens, vocabulary]` logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tuneforge.training.components.generation import Completions

LossType = Literal["grpo", "dr_grpo"]
STD_EPSILON = 1e-4
CHUNK = 256  # rows of logits at a time


def group_advantages(rewards: torch.Tensor, generations: int, scale: bool) -> torch.Tensor:
    """Each reward minus its group's mean (divided by the group's std when `scale`); `rewards`
    holds the groups one after the other, `generations` each."""
    groups = rewards.view(-1, generations)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + STD_EPSILON)
    return centred.reshape(-1)


@dataclass
class PolicyLoss:
    """The loss to minimise (summed over this batch's completions, divided by `denominator`)
    and what it is made of, for the metrics."""

    loss: torch.Tensor
    clipped_tokens: int  # tokens whose update the clipping stopped
    kl_sum: float  # summed over tokens
    tokens: int


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    loss_type: LossType,
    denominator: float,
    beta: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
) -> PolicyLoss:
    """GRPO's loss over completions `[n, c]` (see the module docstring). `denominator` is the
    number of completions the step trains on (`grpo`), or that times the completion length
    limit (`dr_grpo`): batches of one step add up to the step's mean."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    gain = advantages[:, None]
    per_token = -torch.min(ratio * gain, clipped * gain)
    kl_sum = 0.0
    if beta > 0:
        if ref_logprobs is None:
            raise ValueError("A KL term (beta > 0) needs the reference log-probabilities.")
        delta = ref_logprobs - logprobs
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
        kl_sum = float((kl.detach() * mask).sum())
    if loss_type == "grpo":
        per_completion = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        loss = per_completion.sum() / denominator
    else:
        loss = (per_token * mask).sum() / denominator
    was_clipped = ((ratio < 1 - epsilon) & (gain < 0)) | ((ratio > 1 + epsilon) & (gain > 0))
    return PolicyLoss(
        loss=loss,
        clipped_tokens=int((was_clipped.float() * mask).sum()),
        kl_sum=kl_sum,
        tokens=int(mask.sum()),
    )


def _chunk_logprobs(
    head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    logits: torch.Tensor = head(hidden).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    picked = logits.gather(1, targets[:, None]).squeeze(1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_logprobs(model: nn.Module, batch: Completions, chunk: int = CHUNK) -> torch.Tensor:
    """The log-probability `[n, c]` the model (a `Gemma3ForCausalLM`, or a PEFT model wrapping
    one) gives each completion token after its prompt and the tokens before it; 0 where the
    completion mask is 0. Differentiable when gradients are enabled."""
    get_base_model = getattr(model, "get_base_model", None)
    base: Any = get_base_model() if callable(get_base_model) else model
    mask = batch.attention_mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = base.model(
        input_ids=batch.input_ids, attention_mask=mask, position_ids=positions, use_cache=False
    ).last_hidden_state
    start = batch.prompt_ids.shape[1]
    width = batch.completion_ids.shape[1]
    # The hidden state at position i predicts token i + 1.
    predicting = hidden[:, start - 1 : start - 1 + width]
    where = batch.completion_mask.bool()
    rows, targets = predicting[where], batch.completion_ids[where]
    softcap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    needs_grad = torch.is_grad_enabled()
    pieces = []
    for first in range(0, rows.shape[0], chunk):
        part = slice(first, first + chunk)
        if needs_grad:
            value = checkpoint(
                _chunk_logprobs,
                base.lm_head,
                rows[part],
                targets[part],
                softcap,
                use_reentrant=False,
            )
            pieces.append(cast(torch.Tensor, value))
        else:
            pieces.append(_chunk_logprobs(base.lm_head, rows[part], targets[part], softcap))
    values = torch.cat(pieces) if pieces else rows.new_zeros(0, dtype=torch.float32)
    out = torch.zeros(where.shape, dtype=torch.float32, device=values.device)
    return out.masked_scatter(where, values)
