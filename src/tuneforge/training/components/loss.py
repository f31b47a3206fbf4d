"""The causal language-modelling loss, with the LM head only where the loss is.

Gemma's LM head projects onto 262,144 words: at every position it would be most of the compute
and memory of a small model. `causal_lm_loss` runs the decoder, keeps the hidden states of the
positions whose (already shifted) label is a token, and projects only those, a chunk of rows at
a time. The chunks bound memory in the backward pass too: for a plain linear head (Gemma's, tied
to the embeddings, with or without LoRA elsewhere) one autograd function computes each chunk's
loss and its gradients in one go and keeps only the gradients, never the `[tokens, vocabulary]`
logits; any other head (a LoRA-wrapped `lm_head`) recomputes each chunk's logits in the backward
pass instead (activation checkpointing). Cross-entropy is computed in fp32, after Gemma's final
logit soft-capping when the config sets one, and summed: divide by `tokens` (over all micro-
batches of a step) for the mean. With gradients enabled, the fused path computes the head's
gradients during the forward pass, so evaluate under `torch.no_grad()`, which takes a plain path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tuneforge.training.components.packing import Batch, forward_kwargs
from tuneforge.training.components.tokenize import IGNORE_INDEX

CHUNK = 512  # rows of logits at a time (512 x 262,144 fp32 is 512 MiB); 128-1024 time alike


@dataclass
class LossOutput:
    """The summed token cross-entropy (differentiable), over `tokens` loss tokens, of which the
    model's top prediction was `correct`."""

    loss_sum: torch.Tensor
    tokens: int
    correct: int


def _capped(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    return logits if softcap is None else torch.tanh(logits / softcap) * softcap


def _chunk_loss(
    head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = _capped(head(hidden).float(), softcap)
    loss = F.cross_entropy(logits, targets, reduction="sum")
    return loss, (logits.detach().argmax(-1) == targets).sum()


class _LinearCrossEntropy(torch.autograd.Function):
    """`sum(cross_entropy(softcap(hidden @ weight.T), targets))` and the argmax hits, chunk by
    chunk, with the gradients computed in the forward pass so no chunk's logits outlive it."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        softcap: float | None,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if need_weight
            else None
        )
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            h, t = hidden[rows], targets[rows]
            raw = F.linear(h, weight)  # bf16 under autocast, like the model's own head
            logits = raw.float()
            tanh = None
            if softcap is not None:
                tanh = torch.tanh(logits / softcap)
                logits = tanh * softcap
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, t[:, None]).squeeze(1)
            loss += (lse - picked).sum()
            correct += (logits.argmax(-1) == t).sum()
            # d loss / d logits = softmax - one_hot(target), through the soft-cap's tanh
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(t.shape[0], device=t.device), t] -= 1
            if tanh is not None:
                grad.mul_(1 - tanh.square_())
            grad = grad.to(raw.dtype)
            if grad_hidden is not None:
                grad_hidden[rows] = grad @ weight.to(grad.dtype)
            if grad_weight is not None:
                grad_weight += grad.t() @ h.to(grad.dtype)
        ctx.grads = grad_hidden, grad_weight
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_loss: torch.Tensor, _grad_correct: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_loss).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None


def head_loss(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed cross-entropy of `head(hidden)` (soft-capped) against `targets`, and how many
    of its argmaxes hit, `chunk` rows at a time; differentiable when gradients are enabled."""
    weight = getattr(head, "weight", None)
    needs_grad = torch.is_grad_enabled() and (
        hidden.requires_grad or any(p.requires_grad for p in head.parameters())
    )
    if type(head) is nn.Linear and head.bias is None and needs_grad:
        result = _LinearCrossEntropy.apply(hidden, weight, targets, softcap, chunk)
        return cast(tuple[torch.Tensor, torch.Tensor], result)
    loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
    correct = torch.zeros((), dtype=torch.long, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk):
        rows = slice(start, start + chunk)
        if needs_grad:
            part = checkpoint(
                _chunk_loss, head, hidden[rows], targets[rows], softcap, use_reentrant=False
            )
            chunk_loss, hits = cast(tuple[torch.Tensor, torch.Tensor], part)
        else:
            chunk_loss, hits = _chunk_loss(head, hidden[rows], targets[rows], softcap)
        loss = loss + chunk_loss
        correct += hits
    return loss, correct


def causal_lm(model: nn.Module) -> Any:
    """The `Gemma3ForCausalLM` itself, or the one a PEFT model wraps (its adapters inside):
    its `.model` is the decoder, its `.lm_head` the output head."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def softcap_of(base: Any) -> float | None:
    """The model's final logit soft-capping (None: none)."""
    return getattr(base.config.get_text_config(), "final_logit_softcapping", None)


def causal_lm_loss(model: nn.Module, batch: Batch, chunk: int = CHUNK) -> LossOutput:
    """The summed next-token loss of a `Gemma3ForCausalLM`, or of a PEFT model wrapping one, on
    `batch`, projecting only the positions that carry loss, `chunk` rows at a time."""
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}.")
    if getattr(model, "computes_loss", False):  # sharded (FSDP): its forward computes this
        out: LossOutput = model(batch, chunk)
        return out
    base = causal_lm(model)
    hidden = base.model(**forward_kwargs(batch)).last_hidden_state
    where = batch.labels != IGNORE_INDEX
    targets = batch.labels[where]
    if targets.numel() == 0:
        return LossOutput(loss_sum=hidden.sum() * 0.0, tokens=0, correct=0)
    loss, correct = head_loss(base.lm_head, hidden[where], targets, softcap_of(base), chunk)
    return LossOutput(loss_sum=loss, tokens=int(targets.numel()), correct=int(correct))
