"""Perplexity on samples, defined exactly as training's evaluation defines it.

Each row is tokenised as training tokenises it (`encode_record`, in the model's chat format, loss
on the assistant answers and the end of their turns only; all of a plain-text row after its
`<bos>`), and the loss is the one training minimises (`causal_lm_loss`, cross-entropy summed
over those tokens). Perplexity is exp(total NLL / total loss tokens) over all the samples: a
mean over tokens, so a long answer weighs more than a short one, as in training's `eval_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from tuneforge.errors import InvalidInput
from tuneforge.evaluation.metrics.contract import SuiteResult
from tuneforge.evaluation.samples import Sample
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.training.components.loss import causal_lm_loss
from tuneforge.training.components.packing import collate
from tuneforge.training.components.tokenize import encode_record

MAX_LOG_PERPLEXITY = 50.0  # exp(50) ~ 5e21: a random model's perplexity, without overflowing


def from_nll(nll: float) -> float:
    """exp(`nll`), capped like training's evaluation caps it."""
    return math.exp(min(nll, MAX_LOG_PERPLEXITY))


def perplexity(
    engine: TransformersEngine,
    adapter: str | None,
    samples: Sequence[Sample],
    max_length: int,
    on_sample: Callable[[int], None],
) -> SuiteResult:
    """The perplexity of `engine`'s model (with `adapter`) on `samples`, each cut to its first
    `max_length` tokens, calling `on_sample(done)` after each.

    metrics: `perplexity`, `nll` (mean loss per token) and `token_accuracy` (share of loss tokens
    that were the model's top prediction). per_sample: `nll`, `perplexity` and `tokens` (a
    sample left without loss tokens by the cut has only `tokens`, 0). details: `tokens`.
    """
    tokenizer = engine.tokenizer.backend_tokenizer
    total_loss, total_tokens, total_correct = 0.0, 0, 0
    per_sample: list[dict[str, float | bool]] = []
    for done, sample in enumerate(samples, 1):
        example = encode_record(sample.record, tokenizer, max_length, assistant_only=True)
        if example is None:
            per_sample.append({"tokens": 0})
        else:
            batch = collate([example], packing=True).to(engine.device)
            with engine.lock, torch.no_grad(), engine.using(adapter):
                out = causal_lm_loss(engine.model, batch)
            loss = float(out.loss_sum)
            total_loss += loss
            total_tokens += out.tokens
            total_correct += out.correct
            nll = loss / out.tokens
            per_sample.append({"nll": nll, "perplexity": from_nll(nll), "tokens": out.tokens})
        on_sample(done)
    if total_tokens == 0:
        raise InvalidInput(f"No sample has a token to score within {max_length} tokens.")
    mean = total_loss / total_tokens
    return SuiteResult(
        metrics={
            "perplexity": from_nll(mean),
            "nll": mean,
            "token_accuracy": total_correct / total_tokens,
        },
        per_sample=per_sample,
        details={"tokens": total_tokens},
    )
