"""The preference losses against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from tuneforge.training.components.preference_loss import (
    Side,
    dpo_loss,
    kto_kl,
    kto_loss,
    orpo_loss,
)


def side(*sums: float, tokens: tuple[int, ...] | None = None) -> Side:
    count = tokens or (1,) * len(sums)
    return Side(torch.tensor(sums, requires_grad=True), torch.tensor(count))


def test_dpo_sigmoid_loss_rewards_and_gradient() -> None:
    chosen, rejected = side(-10.0), side(-12.0)
    out = dpo_loss(chosen, rejected, side(-11.0), side(-11.0), beta=0.1)
    # logits = 0.1 * ((-10 + 11) - (-12 + 11)) = 0.2; loss = log(1 + e^-0.2)
    assert float(out.loss) == pytest.approx(math.log1p(math.exp(-0.2)), abs=1e-6)
    assert float(out.loss) == pytest.approx(0.598139, abs=1e-6)
    assert float(out.chosen) == pytest.approx(0.1) and float(out.rejected) == pytest.approx(-0.1)
    assert not out.chosen.requires_grad
    out.loss.sum().backward()
    # d loss / d chosen = -beta * (1 - sigmoid(0.2)) = -0.1 * 0.450166
    assert chosen.sums.grad is not None and rejected.sums.grad is not None
    assert float(chosen.sums.grad) == pytest.approx(-0.0450166, abs=1e-6)
    assert float(rejected.sums.grad) == pytest.approx(0.0450166, abs=1e-6)


def test_dpo_label_smoothing_mixes_in_the_swapped_pair() -> None:
    out = dpo_loss(side(-10.0), side(-12.0), side(-11.0), side(-11.0), 0.1, label_smoothing=0.1)
    # 0.9 * log(1 + e^-0.2) + 0.1 * log(1 + e^0.2) = 0.9 * 0.598139 + 0.1 * 0.798139
    assert float(out.loss) == pytest.approx(0.618139, abs=1e-6)


def test_ipo_holds_the_mean_margin_near_one_over_two_beta() -> None:
    chosen, rejected = side(-10.0, tokens=(2,)), side(-12.0, tokens=(4,))
    reference_chosen, reference_rejected = side(-11.0, tokens=(2,)), side(-11.0, tokens=(4,))
    out = dpo_loss(chosen, rejected, reference_chosen, reference_rejected, 0.1, "ipo")
    # means: chosen -5 vs -5.5, rejected -3 vs -2.75: margin 0.5 + 0.25 = 0.75; target 1/0.2 = 5
    assert float(out.loss) == pytest.approx((0.75 - 5) ** 2, abs=1e-5)
    assert float(out.chosen) == pytest.approx(0.1)  # rewards stay on the summed log-probs


def test_simpo_needs_no_reference_and_normalises_by_length() -> None:
    out = dpo_loss(
        side(-10.0, tokens=(2,)), side(-12.0, tokens=(4,)), None, None, 2.0, "simpo", 0.0, 0.5
    )
    # logits = 2 * (-10/2 - -12/4) - 0.5 = -4.5; loss = log(1 + e^4.5)
    assert float(out.loss) == pytest.approx(math.log1p(math.exp(4.5)), abs=1e-5)
    assert float(out.chosen) == pytest.approx(-10.0) and float(out.rejected) == pytest.approx(-6.0)
    with pytest.raises(ValueError, match="needs the reference"):
        dpo_loss(side(-1.0), side(-2.0), None, None, 0.1, "sigmoid")


def test_orpo_adds_the_odds_ratio_term_to_the_chosen_answers_nll() -> None:
    half, quarter = math.log(0.5), math.log(0.25)
    out = orpo_loss(side(2 * half, tokens=(2,)), side(3 * quarter, tokens=(3,)), beta=0.1)
    # odds(0.5) = 1, odds(0.25) = 1/3: log sigmoid(log 3) = log 0.75; nll = log 2
    assert float(out.parts["log_odds_ratio"]) == pytest.approx(math.log(0.75), abs=1e-6)
    assert float(out.parts["nll_loss"]) == pytest.approx(math.log(2), abs=1e-6)
    assert float(out.loss) == pytest.approx(math.log(2) - 0.1 * math.log(0.75), abs=1e-6)
    assert float(out.chosen) == pytest.approx(0.1 * half)
    assert float(out.rejected) == pytest.approx(0.1 * quarter)


def test_kto_weighs_desirable_and_undesirable_answers_around_the_kl_point() -> None:
    policy = torch.tensor([-5.0, -7.0], requires_grad=True)
    out = kto_loss(
        policy,
        torch.tensor([-6.0, -6.0]),
        torch.tensor([True, False]),
        torch.tensor(0.5),
        beta=0.1,
        desirable_weight=1.0,
        undesirable_weight=2.0,
    )
    # shifts +1 and -1: 1 - sigmoid(0.1 * (1 - 0.5)); 2 * (1 - sigmoid(0.1 * (0.5 + 1)))
    expected = [1 - 1 / (1 + math.exp(-0.05)), 2 * (1 - 1 / (1 + math.exp(-0.15)))]
    assert out.loss.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.loss.tolist() == pytest.approx([0.487503, 0.925140], abs=1e-6)
    assert out.rewards.tolist() == pytest.approx([0.1, -0.1])


def test_the_kl_point_is_the_mean_shift_detached_and_never_below_zero() -> None:
    policy = torch.tensor([-1.0, -1.0], requires_grad=True)
    point = kto_kl(policy, torch.tensor([-2.0, -3.0]))
    assert float(point) == pytest.approx(1.5) and not point.requires_grad
    assert float(kto_kl(torch.tensor([-3.0]), torch.tensor([-2.0]))) == 0.0
