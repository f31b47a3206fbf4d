"""Kahneman-Tversky optimisation: the recipe that registers it as `kto`.

KTO learns from single answers marked desirable or not (a feedback dataset), or from preference
pairs split into a desirable chosen and an undesirable rejected answer. Each answer's reward is
how much likelier the model finds it than the reference did, measured against a reference point:
the KL estimate of the step, from mismatched pairs (each prompt with another example's answer)
under the policy, without gradients, against the same pairs under the reference. The reference
log-probabilities of both (the answers and the mismatched pairs) are computed once with the
starting model and kept with the checkpoints (`components/preference.py`). Over several
processes the KL estimate of a step is the mean over every rank's examples, as it is over one
process's whole batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import InvalidInput
from tuneforge.training.recipe import Batching, Checkpoints, Outcome, Recipe
from tuneforge.training.recipes.dpo import check_pairs, epochs_of
from tuneforge.training.spec import KTOSpec

if TYPE_CHECKING:
    import torch

    from tuneforge.training.components.completions import Completion, Feedback
    from tuneforge.training.components.loop import StepWork
    from tuneforge.training.reporting import Reporter

    #: Per example: the loss (differentiable), the reward and the label (on the CPU).
    Result = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def mismatched(examples: Sequence[Feedback], max_length: int) -> list[Completion]:
    """Each example's prompt with another example's answer (two along, so that the two halves
    of a split preference pair, which share a prompt, are not matched), cut to `max_length`."""
    from tuneforge.training.components.completions import Completion

    count = len(examples)
    offset = 2 if count > 2 else 1
    result = []
    for index, example in enumerate(examples):
        prompt = example.completion.prompt_ids
        answer = examples[(index + offset) % count].completion.answer_ids
        result.append(Completion(prompt, answer[: max(1, max_length - len(prompt))]))
    return result


def train_kto(
    spec: KTOSpec,
    model_path: Path,
    train_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    reporter: Reporter,
    workdir: Path,
    checkpoints: Checkpoints | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Outcome:
    del secrets  # KTO calls no judge
    loading = time.perf_counter()  # importing torch counts as loading
    import torch

    from tuneforge.models.tokenizer import model_tokenizer
    from tuneforge.training.components.logprobs import answer_logprobs
    from tuneforge.training.components.loop import Loop, StepWork
    from tuneforge.training.components.preference import (
        encode_feedbacks,
        kept_reference,
        units,
    )
    from tuneforge.training.components.preference_loss import kto_kl, kto_loss
    from tuneforge.training.evaluation import sample_prompts
    from tuneforge.training.parallel import ranks
    from tuneforge.training.runtime import evaluating, prepare_model, runtime_for

    runtime = runtime_for(spec)
    tokenizer = model_tokenizer(model_path)
    splits = {
        "train": encode_feedbacks(train_records, tokenizer, spec.max_length, reporter, "train"),
        "test": encode_feedbacks(
            test_records[: spec.eval_max_examples], tokenizer, spec.max_length, reporter, "test"
        ),
    }
    train, evals = splits["train"], splits["test"]
    if not train:
        raise InvalidInput("The training split has no answers to learn from.")
    desirable = sum(e.desirable for e in train)
    reporter.log(
        f"{len(train)} training answers ({desirable} desirable, {len(train) - desirable} "
        f"undesirable) and {len(evals)} evaluation answers; {spec.method} on {runtime.device} "
        f"in {runtime.precision}"
    )
    if desirable in (0, len(train)):
        reporter.log(
            "every training answer has the same label: KTO learns best from both kinds",
            "warning",
        )
    model = prepare_model(spec, model_path, runtime)
    loop = Loop(
        spec, model, model_path, runtime, reporter, workdir, checkpoints, len(train), loading
    )
    # [examples, 2]: each answer and its mismatched pair, under the reference
    others = {split: mismatched(examples, spec.max_length) for split, examples in splits.items()}
    references = {}
    for split, examples in splits.items():
        if examples:
            both = [e.completion for e in examples] + others[split]
            references[split] = kept_reference(loop, model, both, split).view(2, -1).t()

    def sums(examples: Sequence[Completion], ids: Sequence[int]) -> torch.Tensor:
        with runtime.autocast():
            return answer_logprobs(model, [examples[i] for i in ids], runtime.device).sums

    def kl(split: str, ids: Sequence[int], everyone: bool = False) -> torch.Tensor:
        """The reference point of these examples (`everyone`: and of the other ranks' shares
        of the step): their mismatched pairs' mean log-probability shift, without gradients."""
        with torch.no_grad():
            policy = [
                sums(others[split], u).float().cpu() for u in units(ids, runtime, spec.batch_size)
            ]
        mine = (torch.cat(policy) if policy else torch.zeros(0), references[split][list(ids), 1])
        shares = ranks.gathered(mine) if everyone else [mine]
        return kto_kl(torch.cat([p for p, _ in shares]), torch.cat([r for _, r in shares]))

    def losses(split: str, ids: Sequence[int], point: torch.Tensor) -> Result:
        examples = splits[split]
        policy = sums([e.completion for e in examples], ids)
        labels = torch.tensor([examples[i].desirable for i in ids], device=policy.device)
        reference = references[split][list(ids), 0].to(policy.device)
        out = kto_loss(
            policy,
            reference,
            labels,
            point.to(policy.device),
            spec.beta,
            spec.desirable_weight,
            spec.undesirable_weight,
        )
        return out.loss, out.rewards.float().cpu(), labels.cpu()

    def detached(result: Result) -> Result:
        return result[0].detach().float().cpu(), result[1], result[2]

    def metrics(results: Sequence[Result], point: torch.Tensor, prefix: str) -> dict[str, float]:
        loss = torch.cat([r[0].detach().float().cpu() for r in results])
        rewards = torch.cat([r[1] for r in results])
        labels = torch.cat([r[2] for r in results])
        values = {f"{prefix}loss": float(loss.mean()), f"{prefix}kl": float(point)}
        # An answer's reward is right when it has the sign its label calls for.
        values[f"{prefix}rewards/accuracy"] = float(((rewards > 0) == labels).float().mean())
        if labels.any():
            values[f"{prefix}rewards/chosen"] = float(rewards[labels].mean())
        if not labels.all():
            values[f"{prefix}rewards/rejected"] = float(rewards[~labels].mean())
        if labels.any() and not labels.all():
            values[f"{prefix}rewards/margin"] = (
                values[f"{prefix}rewards/chosen"] - values[f"{prefix}rewards/rejected"]
            )
        return values

    def step(micro_batches: list[list[int]]) -> StepWork:
        """The step's loss is a mean over every rank's examples, against the reference point
        of all of them; its metrics are those of all of them, gathered."""
        ids = [i for batch in micro_batches for i in batch]
        point = kl("train", ids, everyone=True)
        count = loop.total(len(ids))  # a rank's share of the step may be empty
        results = []
        for unit in [
            u for batch in micro_batches if batch for u in units(batch, runtime, len(batch))
        ]:
            result = losses("train", unit, point)
            loop.backward(result[0].sum() / count)
            results.append(detached(result))
        everyone = ranks.gathered((results, sum(train[i].completion.tokens for i in ids)))
        values = metrics([result for part, _ in everyone for result in part], point, "")
        tokens = sum(tokens for _, tokens in everyone)
        return StepWork(loss=values.pop("loss"), tokens=tokens, metrics=values)

    def evaluate() -> dict[str, float]:
        ids = list(range(len(evals)))
        with evaluating(model):
            point = kl("test", ids)
            results = [losses("test", u, point) for u in units(ids, runtime, spec.batch_size)]
        return metrics(results, point, "eval_")

    return loop.run(
        step,
        evaluate if evals else None,
        eval_tokens=sum(e.completion.tokens for e in evals),
        samples=loop.sampler(tokenizer, sample_prompts(spec.sample_prompts, test_records)),
    )


def _batching(spec: KTOSpec) -> Batching:
    # Each step passes the mismatched pairs without gradients; the reference passes (answers
    # and mismatched pairs) run once for the whole run, before it starts.
    return Batching(
        packed=True, answers_only=True, sequences=1.0, reference_passes=1.0 + 2.0 / epochs_of(spec)
    )


RECIPE = Recipe(
    trainer="kto",
    title="Kahneman-Tversky optimisation (KTO)",
    description="Learns from answers marked good or bad (a thumbs up or down), one at a "
    "time, no pairs needed; preference pairs work too, each split into a good and a bad one.",
    spec=KTOSpec,
    train=train_kto,
    batching=_batching,
    data=("feedback", "preference"),
    check=check_pairs,
    presets="{model}_{method}_kto",
    distributed=True,
)
