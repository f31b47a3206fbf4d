"""The preference suite: on a preference dataset's held-out pairs, how often a model finds the
chosen answer likelier than the rejected one, without generating anything.

Each answer's log-probability after the pair's prompt is computed as preference training
computes it (`training/components/completions.py` renders and cuts the pair,
`training/components/logprobs.py` sums the answer tokens' log-probabilities). Length-normalised
(the default), the two answers compare by their mean log-probability per token, so the longer
answer is not the less likely one for its length alone; otherwise by their sums. A pair is
preferred when the chosen answer's value is strictly higher; the margin is chosen minus rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from tuneforge.evaluation.metrics.contract import SuiteResult, mean
from tuneforge.evaluation.samples import Sample
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.training.components.completions import encode_pair
from tuneforge.training.components.logprobs import answer_logprobs


def preference(
    engine: TransformersEngine,
    adapter: str | None,
    samples: Sequence[Sample],
    max_length: int,
    length_normalized: bool,
    on_sample: Callable[[int], None],
) -> SuiteResult:
    """Which answer of each pair in `samples` `engine`'s model (with `adapter`) prefers, each
    pair cut to `max_length` tokens per answer with its prompt, calling `on_sample(done)` after
    each.

    metrics: `preference_accuracy` (share of pairs whose chosen answer is likelier), `margin`
    (mean chosen minus rejected log-probability), `chosen_logprob` and `rejected_logprob`
    (means). per_sample: `correct`, `score` (1.0 or 0.0), `margin`, `chosen_logprob`,
    `rejected_logprob`, `cut` (the pair was cut to fit). details: `length_normalized`, `cut`
    (how many pairs were cut).
    """
    tokenizer = engine.tokenizer.backend_tokenizer
    per_sample: list[dict[str, float | bool]] = []
    for done, sample in enumerate(samples, 1):
        pair = encode_pair(sample.record, tokenizer, max_length)
        with engine.lock, torch.no_grad(), engine.using(adapter):
            logprobs = answer_logprobs(
                engine.model, [pair.chosen, pair.rejected], device=str(engine.device)
            )
        values = logprobs.means if length_normalized else logprobs.sums
        chosen, rejected = float(values[0]), float(values[1])
        preferred = chosen > rejected
        per_sample.append(
            {
                "correct": preferred,
                "score": float(preferred),
                "margin": chosen - rejected,
                "chosen_logprob": chosen,
                "rejected_logprob": rejected,
                "cut": pair.cut,
            }
        )
        on_sample(done)
    metrics = {
        name: mean([float(s[key]) for s in per_sample])
        for name, key in (
            ("preference_accuracy", "correct"),
            ("margin", "margin"),
            ("chosen_logprob", "chosen_logprob"),
            ("rejected_logprob", "rejected_logprob"),
        )
    }
    cut = sum(bool(s["cut"]) for s in per_sample)
    return SuiteResult(metrics, per_sample, {"length_normalized": length_normalized, "cut": cut})
