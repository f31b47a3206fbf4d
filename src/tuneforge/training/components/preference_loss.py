"""The losses of preference training, on answer log-probabilities (`logprobs.py`).

Each takes per-example tensors and returns per-example losses (the recipe averages them over a
step) and the implicit rewards the run page charts, detached:

* DPO (`sigmoid`): `-log sigmoid(beta * ((pc - rc) - (pr - rr)))`, where p and r are the summed
  answer log-probabilities under the policy and the reference, c and r the chosen and rejected
  answers; label smoothing mixes in the loss of the swapped pair. Rewards: `beta * (p - r)`.
* IPO: `(((pc - rc) - (pr - rr)) - 1 / (2 beta))^2`, on mean (per-token) log-probabilities,
  which holds the margin near `1 / (2 beta)` instead of pushing it without end.
* SimPO (reference-free): `-log sigmoid(beta * (mean pc - mean pr) - gamma)`. Rewards:
  `beta * mean p`.
* ORPO (reference-free): the chosen answer's mean token NLL minus `lambda * log sigmoid(log
  odds(c) - log odds(r))`, the odds from mean log-probabilities. Rewards: `lambda * mean p`.
* KTO: `w_d * (1 - sigmoid(beta * (p - r - z)))` for a desirable answer, `w_u * (1 -
  sigmoid(beta * (z - (p - r))))` for an undesirable one, where z is the batch's KL estimate
  (detached, at least 0). Rewards: `beta * (p - r)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

DPOLossType = Literal["sigmoid", "ipo", "simpo"]


@dataclass
class PairLosses:
    """Per pair: the loss (differentiable), the rewards of each side and the loss's parts worth
    a chart of their own, by metric name (detached)."""

    loss: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Side:
    """One side of a batch of pairs: summed answer log-probabilities and answer token counts."""

    sums: torch.Tensor
    tokens: torch.Tensor

    @property
    def means(self) -> torch.Tensor:
        return self.sums / self.tokens.to(self.sums.dtype)


def _smoothed(logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    return -F.logsigmoid(logits) * (1 - smoothing) - F.logsigmoid(-logits) * smoothing


def dpo_loss(
    chosen: Side,
    rejected: Side,
    reference_chosen: Side | None,
    reference_rejected: Side | None,
    beta: float,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
) -> PairLosses:
    """DPO, IPO or SimPO per pair (see the module docstring); SimPO needs no reference."""
    if loss_type == "simpo":
        logits = beta * (chosen.means - rejected.means) - simpo_gamma
        return PairLosses(
            _smoothed(logits, label_smoothing),
            (beta * chosen.means).detach(),
            (beta * rejected.means).detach(),
        )
    if reference_chosen is None or reference_rejected is None:
        raise ValueError(f"The {loss_type} loss needs the reference log-probabilities.")
    chosen_shift = chosen.sums - reference_chosen.sums
    rejected_shift = rejected.sums - reference_rejected.sums
    if loss_type == "ipo":
        margin = (chosen.means - reference_chosen.means) - (
            rejected.means - reference_rejected.means
        )
        loss = (margin - 1 / (2 * beta)) ** 2
    else:
        loss = _smoothed(beta * (chosen_shift - rejected_shift), label_smoothing)
    return PairLosses(loss, (beta * chosen_shift).detach(), (beta * rejected_shift).detach())


def orpo_loss(chosen: Side, rejected: Side, beta: float) -> PairLosses:
    """ORPO per pair (see the module docstring), with its two parts: `nll_loss` (the chosen
    answer's) and `log_odds_ratio`, `log sigmoid(log odds(c) - log odds(r))`."""
    chosen_mean, rejected_mean = chosen.means, rejected.means
    # log odds(p) = log p - log(1 - p), with log(1 - p) computed stably from log p
    log_odds = (chosen_mean - rejected_mean) - (
        torch.log1p(-torch.exp(chosen_mean).clamp(max=1 - 1e-7))
        - torch.log1p(-torch.exp(rejected_mean).clamp(max=1 - 1e-7))
    )
    ratio = F.logsigmoid(log_odds)
    nll = -chosen_mean
    return PairLosses(
        loss=nll - beta * ratio,
        chosen=(beta * chosen_mean).detach(),
        rejected=(beta * rejected_mean).detach(),
        parts={"nll_loss": nll.detach(), "log_odds_ratio": ratio.detach()},
    )


@dataclass
class KTOLosses:
    """Per example: the loss (differentiable) and its reward `β·(π - r)` (detached)."""

    loss: torch.Tensor
    rewards: torch.Tensor


def kto_kl(policy: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KTO's reference point: the mean log-probability shift of mismatched prompt/answer pairs
    under the policy against the reference, detached and at least 0."""
    return (policy - reference).mean().detach().clamp(min=0)


def kto_loss(
    policy: torch.Tensor,
    reference: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLosses:
    """KTO per example (see the module docstring); `desirable` is a boolean tensor."""
    shift = policy - reference
    good = desirable_weight * (1 - torch.sigmoid(beta * (shift - kl)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (kl - shift)))
    return KTOLosses(torch.where(desirable, good, bad), (beta * shift).detach())
