"""Answer log-probabilities with the head on answers only equal those of the full logits, and
so do their gradients; a disabled adapter gives the base's values."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tests.training import tiny_gemma3
from tuneforge.training.components.completions import Completion
from tuneforge.training.components.logprobs import answer_logprobs


def _completions() -> list[Completion]:
    generator = torch.Generator().manual_seed(3)
    shapes = [(7, 5), (3, 12), (11, 1)]
    return [
        Completion(
            torch.randint(3, 512, (p,), generator=generator).tolist(),
            torch.randint(3, 512, (a,), generator=generator).tolist(),
        )
        for p, a in shapes
    ]


def _by_full_logits(model: torch.nn.Module, completions: list[Completion]) -> torch.Tensor:
    """The reference: every position's logits, one completion at a time."""
    sums = []
    for c in completions:
        ids = torch.tensor([c.prompt_ids + c.answer_ids])
        logprobs = model(input_ids=ids, use_cache=False).logits[0].float().log_softmax(-1)
        start = len(c.prompt_ids) - 1
        rows = torch.arange(start, start + len(c.answer_ids))
        sums.append(logprobs[rows, torch.tensor(c.answer_ids)].sum())
    return torch.stack(sums)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("packed", [True, False])
def test_sums_counts_and_gradients_equal_the_full_logits_computation(
    softcap: float | None, packed: bool
) -> None:
    model = tiny_gemma3(final_logit_softcapping=softcap)
    completions = _completions()
    weights = torch.tensor([1.0, -2.0, 0.5])  # a loss that weighs the completions unequally
    out = answer_logprobs(model, completions, packed=packed)
    (out.sums * weights).sum().backward()
    grads = _grads(model)
    reference = _by_full_logits(model, completions)
    (reference * weights).sum().backward()
    expected = _grads(model)
    assert out.tokens.tolist() == [5, 12, 1]
    torch.testing.assert_close(out.sums, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.means, reference / torch.tensor([5.0, 12.0, 1.0]))
    assert grads.keys() == expected.keys() == {n for n, _ in model.named_parameters()}
    for name, grad in grads.items():  # equal up to fp32 rounding
        difference = (grad - expected[name]).abs().max()
        assert difference <= 1e-5 * expected[name].abs().max(), (name, difference)


def test_without_gradients_and_with_the_adapter_disabled_it_scores_the_base() -> None:
    model = tiny_gemma3()
    completions = _completions()
    with torch.no_grad():
        base = answer_logprobs(model, completions).sums
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    adapted = get_peft_model(model, config)
    with torch.no_grad():
        changed = answer_logprobs(adapted, completions).sums
        with adapted.disable_adapter():
            switched_off = answer_logprobs(adapted, completions).sums
    assert not torch.allclose(changed, base)
    torch.testing.assert_close(switched_off, base)
    assert not base.requires_grad


def test_it_needs_a_completion_and_completions_need_tokens() -> None:
    with pytest.raises(ValueError, match="at least one completion"):
        answer_logprobs(tiny_gemma3(), [])
    with pytest.raises(ValueError, match="at least one prompt and one answer"):
        Completion([2], [])
