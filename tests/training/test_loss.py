"""The loss on loss positions only equals the loss on full logits, and so do its gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model

from tests.training import tiny_gemma3
from tuneforge.training.components.loss import causal_lm_loss
from tuneforge.training.components.packing import Batch, collate, forward_kwargs
from tuneforge.training.components.tokenize import IGNORE_INDEX, Example


def _examples() -> list[Example]:
    generator = torch.Generator().manual_seed(2)
    examples = []
    for n in (13, 5, 21):
        ids = torch.randint(3, 512, (n,), generator=generator).tolist()
        labels = [IGNORE_INDEX if i < n // 3 else token for i, token in enumerate(ids)]
        examples.append(Example(input_ids=ids, labels=labels))
    return examples


def _full_logits_loss(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
    """The reference: logits at every position, cross-entropy against the shifted labels."""
    logits = model(**forward_kwargs(batch)).logits.float()
    labels = batch.labels
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    where = labels != IGNORE_INDEX
    correct = int((logits.argmax(-1)[where] == labels[where]).sum())
    return loss, correct


def _assert_grads_equal(grads: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Equal up to fp32 rounding: within a millionth of each gradient's largest entry."""
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        scale = expected[name].abs().max()
        assert scale > 0, name
        difference = (grad - expected[name]).abs().max()
        assert difference <= 1e-6 * scale, (name, difference, scale)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_the_mean_equals_transformers_loss_on_a_single_example() -> None:
    model = tiny_gemma3()
    example = _examples()[2]
    with torch.no_grad():
        reference = model(
            torch.tensor([example.input_ids]), labels=torch.tensor([example.labels])
        ).loss
        out = causal_lm_loss(model, collate([example], packing=False))
    assert out.tokens == sum(label != IGNORE_INDEX for label in example.labels[1:])
    torch.testing.assert_close(out.loss_sum / out.tokens, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("packing", [True, False])
def test_loss_correct_and_gradients_equal_the_full_logits_computation(
    softcap: float | None, packing: bool
) -> None:
    model = tiny_gemma3(final_logit_softcapping=softcap)
    batch = collate(_examples(), packing=packing)
    out = causal_lm_loss(model, batch, chunk=4)  # several chunks, the last one partial
    out.loss_sum.backward()
    grads = _grads(model)
    reference, correct = _full_logits_loss(model, batch)
    reference.backward()
    expected = _grads(model)
    assert out.tokens == batch.loss_tokens
    assert out.correct == correct
    torch.testing.assert_close(out.loss_sum, reference, atol=1e-5, rtol=1e-6)
    assert grads.keys() == {n for n, _ in model.named_parameters()}
    _assert_grads_equal(grads, expected)


def test_correct_counts_argmax_hits() -> None:
    """Targets set to the model's own top prediction at every other loss position: exactly
    those count as correct."""
    model = tiny_gemma3()
    batch = collate(_examples(), packing=True)
    with torch.no_grad():
        predicted = model(**forward_kwargs(batch)).logits.argmax(-1)
    where = (batch.labels != IGNORE_INDEX).nonzero(as_tuple=True)
    hits = torch.arange(where[0].numel()) % 2 == 0
    batch.labels[where] = torch.where(hits, predicted[where], (predicted[where] + 1) % 512)
    out = causal_lm_loss(model, batch, chunk=4)
    assert out.tokens == batch.loss_tokens
    assert out.correct == int(hits.sum()) > 0


def test_with_lora_only_the_adapter_learns_under_bf16_autocast() -> None:
    model = tiny_gemma3()
    model.to(torch.bfloat16)  # the frozen base in bf16, as training keeps it
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    for name, parameter in peft_model.named_parameters():
        if "lora_" in name:
            parameter.data = parameter.data.float()  # adapters in fp32
            torch.nn.init.normal_(parameter, std=0.02)  # lora_B starts at 0: give it a value
    batch = collate(_examples(), packing=True)
    peft_model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = causal_lm_loss(peft_model, batch, chunk=8)
    assert out.loss_sum.dtype == torch.float32
    assert out.loss_sum.requires_grad
    out.loss_sum.backward()
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None}
    lora = {n for n, p in peft_model.named_parameters() if "lora_" in n}
    assert with_grad == lora and len(lora) == 2 * 7 * 4  # A and B, 7 projections, 4 layers
    assert all(peft_model.get_parameter(n).grad.abs().sum() > 0 for n in lora)
    # the same loss in fp32 (no autocast) is close: bf16 rounding only
    with torch.no_grad():
        fp32 = causal_lm_loss(peft_model.float(), batch).loss_sum
    torch.testing.assert_close(out.loss_sum.detach(), fp32, rtol=2e-2, atol=0)


def test_a_lora_wrapped_head_trains_through_the_checkpointed_path() -> None:
    model = tiny_gemma3(tie_word_embeddings=False)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["lm_head", "q_proj"]))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)
    batch = collate(_examples(), packing=True)
    out = causal_lm_loss(peft_model, batch, chunk=4)
    out.loss_sum.backward()
    grads = _grads(peft_model)
    reference, correct = _full_logits_loss(peft_model.get_base_model(), batch)
    reference.backward()
    expected = _grads(peft_model)
    assert out.correct == correct
    torch.testing.assert_close(out.loss_sum, reference, atol=1e-5, rtol=1e-6)
    assert any("lm_head.lora_A" in n for n in grads)
    _assert_grads_equal(grads, expected)


def test_no_grad_evaluation_keeps_no_graph() -> None:
    model = tiny_gemma3()
    batch = collate(_examples(), packing=True)
    with torch.no_grad():
        out = causal_lm_loss(model, batch)
    assert not out.loss_sum.requires_grad
    reference, correct = _full_logits_loss(model, batch)
    torch.testing.assert_close(out.loss_sum, reference.detach(), atol=1e-5, rtol=1e-6)
    assert out.correct == correct
