"""Packed and padded batches: shifted labels, and logits equal to each example run alone."""

from __future__ import annotations

import pytest
import torch

from tests.training import tiny_gemma3
from tuneforge.training.components.packing import batches, collate, forward_kwargs
from tuneforge.training.components.tokenize import IGNORE_INDEX, Example

LENGTHS = (13, 5, 21)  # two longer than the sliding window of 8, one shorter


def _examples(lengths: tuple[int, ...] = LENGTHS, vocab: int = 512) -> list[Example]:
    generator = torch.Generator().manual_seed(1)
    examples = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=generator).tolist()
        labels = [IGNORE_INDEX if i < n // 2 else token for i, token in enumerate(ids)]
        examples.append(Example(input_ids=ids, labels=labels))
    return examples


def _alone(model: torch.nn.Module, example: Example) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = model(torch.tensor([example.input_ids]), use_cache=False).logits
    return logits[0]


def test_a_packed_batch_is_one_row_with_restarting_positions_and_per_example_shifts() -> None:
    examples = [Example([2, 10, 11], [-100, 10, 11]), Example([2, 20], [-100, 20])]
    batch = collate(examples, packing=True)
    assert batch.input_ids.tolist() == [[2, 10, 11, 2, 20]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert batch.attention_mask is None
    # position 2 (token 11) ends its example: it predicts nothing, not the next example's <bos>
    assert batch.labels.tolist() == [[10, 11, -100, 20, -100]]
    assert (batch.tokens, batch.loss_tokens) == (5, 3)


def test_a_padded_batch_is_right_padded_with_a_mask() -> None:
    examples = [Example([2, 10, 11], [-100, -100, 11]), Example([2, 20], [-100, 20])]
    batch = collate(examples, packing=False)
    assert batch.input_ids.tolist() == [[2, 10, 11], [2, 20, 0]]
    assert batch.attention_mask is not None
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 1, 2]]
    assert batch.labels.tolist() == [[-100, 11, -100], [20, -100, -100]]
    assert (batch.tokens, batch.loss_tokens) == (5, 2)
    assert forward_kwargs(batch)["use_cache"] is False
    moved = batch.to("meta")
    assert moved.input_ids.is_meta and moved.labels.is_meta and moved.position_ids.is_meta
    assert moved.attention_mask is not None and moved.attention_mask.is_meta
    assert collate(examples, packing=True).to("meta").attention_mask is None


def test_collate_refuses_empty_input() -> None:
    with pytest.raises(ValueError, match="at least one example"):
        collate([], packing=True)
    with pytest.raises(ValueError, match="no tokens"):
        collate([Example([], [])], packing=False)


def test_batches_group_indices_in_the_given_order() -> None:
    assert batches([5, 6, 7, 8, 9], [4, 0, 3, 1, 2], 2) == [[4, 0], [3, 1], [2]]
    assert batches([5, 6], [1, 0], 5) == [[1, 0]]
    assert batches([], [], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        batches([5], [0], 0)
    with pytest.raises(IndexError):
        batches([5, 6], [0, 2], 1)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_logits_equal_each_example_alone(attention: str) -> None:
    model = tiny_gemma3(attention)
    examples = _examples()
    batch = collate(examples, packing=True)
    with torch.no_grad():
        packed = model(**forward_kwargs(batch)).logits[0]
    start = 0
    for example in examples:
        end = start + len(example.input_ids)
        torch.testing.assert_close(packed[start:end], _alone(model, example), atol=1e-5, rtol=0)
        start = end
    assert start == packed.shape[0]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_padded_logits_equal_each_example_alone_at_real_positions(attention: str) -> None:
    model = tiny_gemma3(attention)
    examples = _examples()
    batch = collate(examples, packing=False)
    with torch.no_grad():
        padded = model(**forward_kwargs(batch)).logits
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        torch.testing.assert_close(padded[row, :n], _alone(model, example), atol=1e-5, rtol=0)


def test_the_sliding_window_is_exercised() -> None:
    """The parity tests mean something for sliding layers: the window changes the logits."""
    model = tiny_gemma3()
    example = _examples()[2]
    windowed = _alone(model, example)
    model.config.sliding_window = 1_000
    unwindowed = _alone(model, example)
    torch.testing.assert_close(windowed[:8], unwindowed[:8], atol=1e-5, rtol=0)
    assert (windowed[8:] - unwindowed[8:]).abs().max() > 1e-3


def test_examples_in_parallel_give_the_gradients_of_one_after_the_other() -> None:
    from tuneforge.training.components.loss import causal_lm_loss
    from tuneforge.training.runtime import Runtime

    model = tiny_gemma3()
    batches = [collate([example], packing=True) for example in _examples((13, 5, 21, 9, 17))]

    def gradients(runtime: Runtime) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()

        def run(batch: object) -> float:
            out = causal_lm_loss(model, batch)  # type: ignore[arg-type]
            out.loss_sum.backward()
            return float(out.loss_sum)

        total = sum(runtime.each(batches, run))
        return total, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    threads = torch.get_num_threads()
    one_by_one = gradients(Runtime("cpu", "fp32", False, parallel=1))
    together = gradients(Runtime("cpu", "fp32", False, parallel=2))
    assert torch.get_num_threads() == threads  # restored
    assert together[0] == pytest.approx(one_by_one[0], rel=1e-6)
    assert len(together[1]) == len(one_by_one[1]) > 0
    # The threads add their gradients in whichever order they finish: float32 sums agree to
    # rounding (measured up to 4e-6), while a wrong gradient would be off by its own size.
    for a, b in zip(together[1], one_by_one[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)
