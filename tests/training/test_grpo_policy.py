"""GRPO's objective against hand-computed values: group advantages, the clipped loss with its
KL term, and token log-probabilities of left-padded completions equal to the full logits'."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training import tiny_gemma3
from tuneforge.training.components.generation import Completions, left_padded
from tuneforge.training.components.policy import group_advantages, policy_loss, token_logprobs
from tuneforge.training.recipes.grpo import reward_metrics
from tuneforge.training.rewards.grade import Scores


def test_advantages_are_centred_and_scaled_within_each_group() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 2.0, 0.0, 1.0, 1.0])
    scaled = group_advantages(rewards, generations=4, scale=True)
    std = math.sqrt(4 * 0.25 / 3)  # Bessel-corrected std of (1, 0, 0, 1)
    expected = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4)] * 2
    assert scaled[:4].tolist() == pytest.approx(
        [expected[0], expected[1], expected[1], expected[0]]
    )
    assert scaled[4:8].tolist() == [0.0] * 4  # all alike: nothing to learn
    std3 = math.sqrt(2 / 3)  # (2, 0, 1, 1): mean 1, squares 1 + 1 + 0 + 0 over 3
    assert scaled[8:].tolist() == pytest.approx([1 / (std3 + 1e-4), -1 / (std3 + 1e-4), 0, 0])
    raw = group_advantages(rewards, generations=4, scale=False)
    assert raw.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0, 1, -1, 0, 0])


def _case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # Completion 0 (advantage +1): token 0's probability rose by e^0.25 = 1.284 > 1 + 0.2, so
    # it is clipped; completion 1 (advantage -1) has one token, the second is padding.
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.25, -2.0], [-0.5, -0.5]])
    advantages = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    return logprobs, old, advantages, mask


def test_the_clipped_loss_matches_the_hand_computed_one() -> None:
    logprobs, old, advantages, mask = _case()
    out = policy_loss(logprobs, old, advantages, mask, 0.2, "grpo", denominator=2)
    # completion 0: mean(-1.2 (clipped), -1.0) = -1.1; completion 1: -(1 x -1) = 1
    assert float(out.loss.detach()) == pytest.approx((-1.1 + 1.0) / 2)
    assert (out.clipped_tokens, out.tokens, out.kl_sum) == (1, 3, 0.0)
    out.loss.backward()
    assert logprobs.grad is not None
    # The clipped token gets no gradient; the other token of completion 0 gets -A / 2 / 2.
    assert logprobs.grad[0].tolist() == pytest.approx([0.0, -0.25])
    assert logprobs.grad[1, 1] == 0  # padding


def test_dr_grpo_sums_tokens_over_completions_times_the_length_limit() -> None:
    logprobs, old, advantages, mask = _case()
    out = policy_loss(logprobs, old, advantages, mask, 0.2, "dr_grpo", denominator=2 * 2)
    assert float(out.loss.detach()) == pytest.approx((-1.2 - 1.0 + 1.0) / 4)


def test_the_kl_term_is_the_k3_estimate_weighted_by_beta() -> None:
    logprobs, _, advantages, mask = _case()
    reference = logprobs.detach() + 0.1
    old = logprobs.detach()
    out = policy_loss(
        logprobs, old, advantages, mask, 0.2, "grpo", 2, beta=0.5, ref_logprobs=reference
    )
    kl = math.exp(0.1) - 0.1 - 1
    assert out.kl_sum == pytest.approx(3 * kl, rel=1e-5)  # float32
    # At ratio 1 the policy term is -A per token: completion 0: -1, completion 1: +1.
    assert float(out.loss.detach()) == pytest.approx((-1 + 0.5 * kl + 1 + 0.5 * kl) / 2, abs=1e-7)
    with pytest.raises(ValueError, match="reference"):
        policy_loss(logprobs, old, advantages, mask, 0.2, "grpo", 2, beta=0.5)


def test_reward_metrics_mean_spread_within_groups_and_per_grader() -> None:
    scores = [
        Scores(total=1.5, grades={"format": 1.0, "number": 0.5}),
        Scores(total=0.5, grades={"format": 0.0, "number": 0.5}),
        Scores(total=1.0, grades={"format": 1.0, "number": 0.0}),
        Scores(total=1.0, grades={"format": 1.0, "number": 0.0}),
    ]
    metrics = reward_metrics(scores, generations=2, names=["format", "number"])
    assert metrics["reward"] == 1.0
    assert metrics["reward_std"] == pytest.approx((math.sqrt(0.5) + 0.0) / 2)
    assert metrics["reward/format"] == 0.75 and metrics["reward/number"] == 0.25
    assert metrics["reward/format/std"] == pytest.approx(0.5)
    assert metrics["reward/number/std"] == pytest.approx(math.sqrt(1 / 12))


@pytest.mark.parametrize("grad", [False, True])
def test_token_logprobs_of_left_padded_completions_equal_the_full_logits(grad: bool) -> None:
    model = tiny_gemma3()
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 512, (n,), generator=generator).tolist() for n in (5, 9, 2)]
    answers = [torch.randint(3, 512, (n,), generator=generator).tolist() for n in (4, 1, 6)]
    prompt_ids, prompt_mask = left_padded(prompts, "cpu")
    width = max(map(len, answers))
    completion_ids = torch.zeros((3, width), dtype=torch.long)
    completion_mask = torch.zeros((3, width), dtype=torch.long)
    for row, answer in enumerate(answers):
        completion_ids[row, : len(answer)] = torch.tensor(answer)
        completion_mask[row, : len(answer)] = 1
    batch = Completions(
        prompt_ids, prompt_mask, completion_ids, completion_mask, [""] * 3, [True] * 3
    )
    with torch.set_grad_enabled(grad):
        got = token_logprobs(model, batch, chunk=4)  # several chunks
    assert got.requires_grad == grad
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            full = model(input_ids=ids).logits[0].float().log_softmax(-1)
        positions = torch.arange(len(prompt) - 1, len(prompt) + len(answer) - 1)
        expected = full[positions, torch.tensor(answer)]
        assert got[row, : len(answer)].detach() == pytest.approx(expected, abs=1e-4)
        assert got[row, len(answer) :].abs().sum() == 0
