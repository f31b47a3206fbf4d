"""What the preference recipes (DPO, ORPO, KTO) share around their losses: encoding the
records, the passes of a step, the reference log-probabilities and the reward metrics.

The reference is the model the run starts from (the base for a new LoRA, whose adapters start
as a no-op; the earlier fine-tune when the run continues one; the starting weights in full
fine-tuning). Its log-probabilities are computed once, before the first step, in passes without
gradients over the same model, so no second copy is ever in memory; they are kept with every
checkpoint, and a resumed run reads them there instead of recomputing them from a model that
has moved since.

Over several processes (`training/parallel/`) each rank computes its share of the reference
log-probabilities and is given the others'; a step's loss is a mean over every rank's examples
(its denominator summed over the ranks), and its metrics are those of all of them, gathered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from tuneforge.errors import InvalidInput
from tuneforge.models.tokenizer import model_tokenizer
from tuneforge.training.components.completions import (
    Completion,
    Feedback,
    Pair,
    encode_feedback,
    encode_pair,
)
from tuneforge.training.components.logprobs import answer_logprobs
from tuneforge.training.components.loop import EvaluateFunction, Loop, StepFunction, StepWork
from tuneforge.training.components.preference_loss import PairLosses, Side
from tuneforge.training.evaluation import sample_prompts
from tuneforge.training.parallel import ranks
from tuneforge.training.recipe import Checkpoints, Outcome
from tuneforge.training.reporting import Reporter
from tuneforge.training.runtime import Runtime, evaluating, prepare_model, runtime_for
from tuneforge.training.spec import TrainingBase


def _encoded(
    records: Sequence[Mapping[str, Any]],
    encode: Callable[[Mapping[str, Any]], Any],
    split: str,
) -> list[Any]:
    encoded = []
    for index, record in enumerate(records):
        try:
            encoded.append(encode(record))
        except (KeyError, ValueError) as exc:
            raise InvalidInput(
                f"Row {index + 1} of the {split} split is not a preference or feedback record "
                f"this trainer can read: {exc}. Process the dataset as preference data."
            ) from exc
    return encoded


def encode_pairs(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Tokenizer,
    max_length: int,
    reporter: Reporter,
    split: str,
) -> list[Pair]:
    """The split's preference records as pairs; a log says how many `max_length` cut."""
    pairs: list[Pair] = _encoded(records, lambda r: encode_pair(r, tokenizer, max_length), split)
    _log_cuts(sum(p.cut for p in pairs), len(pairs), "pairs", max_length, reporter, split)
    return pairs


def encode_feedbacks(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Tokenizer,
    max_length: int,
    reporter: Reporter,
    split: str,
) -> list[Feedback]:
    """The split's feedback records (or preference records, each split into a desirable and
    an undesirable example); a log says how many `max_length` cut."""
    nested: list[list[Feedback]] = _encoded(
        records, lambda r: encode_feedback(r, tokenizer, max_length), split
    )
    examples = [example for group in nested for example in group]
    _log_cuts(sum(e.cut for e in examples), len(examples), "examples", max_length, reporter, split)
    return examples


def _log_cuts(
    cut: int, total: int, what: str, max_length: int, reporter: Reporter, split: str
) -> None:
    if cut:
        reporter.log(
            f"max length {max_length} cut {cut} of the {total} {split} {what} (a prompt "
            "keeps its end, an answer its beginning)",
            "warning",
        )


def units(ids: Sequence[int], runtime: Runtime, size: int) -> list[list[int]]:
    """How examples run: one at a time on a CPU (no padding, and only one example's
    activations held for its backward pass), `size` together, packed, elsewhere."""
    ids = list(ids)
    if runtime.device == "cpu":
        return [[i] for i in ids]
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def reference_sums(
    model: nn.Module,
    completions: Sequence[Completion],
    runtime: Runtime,
    reporter: Reporter,
    what: str,
) -> torch.Tensor:
    """The summed answer log-probabilities of `completions` under `model` as it is now, without
    gradients (float32, on the CPU). Over several processes each computes its consecutive
    share and every rank gets them all."""
    rank, world = ranks.position()
    share = math.ceil(len(completions) / world)
    mine = completions[rank * share : (rank + 1) * share]
    sums: list[torch.Tensor] = []

    def run(unit: list[int]) -> torch.Tensor:
        with torch.no_grad(), runtime.autocast():  # no_grad and autocast are per thread
            out = answer_logprobs(model, [mine[i] for i in unit], runtime.device)
        return out.sums.float().cpu()

    with evaluating(model):
        for index in range(0, len(mine), 16):
            reporter.progress(0.0, f"reference log-probabilities of {what}: {index}/{len(mine)}")
            sums += runtime.each(units(range(index, min(index + 16, len(mine))), runtime, 16), run)
    return torch.cat(ranks.gathered(torch.cat(sums) if sums else torch.zeros(0)))


def kept_reference(
    loop: Loop, model: nn.Module, completions: Sequence[Completion], split: str
) -> torch.Tensor:
    """The reference log-probabilities of the split's `completions`: those kept with the
    checkpoint the run resumed from, or computed now with the starting model and kept with
    every checkpoint from here on."""
    name = f"reference/{split}"
    kept = loop.kept.get(name)
    if kept is not None and kept.shape[0] == len(completions):
        loop.reporter.log(
            f"using the reference log-probabilities of the {split} split stored with the checkpoint"
        )
        return kept
    loop.reporter.log(
        f"computing the reference log-probabilities of the {split} split with the starting "
        f"model ({len(completions)} answers)"
    )
    started = time.perf_counter()
    values = reference_sums(model, completions, loop.runtime, loop.reporter, f"the {split} split")
    loop.add("reference_seconds", time.perf_counter() - started)
    loop.kept[name] = values
    return values


def pair_reference(loop: Loop, model: nn.Module, pairs: Sequence[Pair], split: str) -> torch.Tensor:
    """`kept_reference` of each pair's chosen and rejected answers, as `[pairs, 2]`."""
    completions = [c for pair in pairs for c in (pair.chosen, pair.rejected)]
    if not completions:
        return torch.zeros(0, 2)
    return kept_reference(loop, model, completions, split).view(-1, 2)


def pair_sides(model: nn.Module, pairs: Sequence[Pair], runtime: Runtime) -> tuple[Side, Side]:
    """The chosen and the rejected answers' log-probabilities of `pairs` under `model`."""
    completions = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    out = answer_logprobs(model, completions, runtime.device)
    n = len(pairs)
    return Side(out.sums[:n], out.tokens[:n]), Side(out.sums[n:], out.tokens[n:])


def reference_sides(
    reference: torch.Tensor, ids: Sequence[int], chosen: Side, rejected: Side
) -> tuple[Side, Side]:
    """The reference's sides for the pairs `ids` (rows of `pair_reference`), beside the
    policy's."""
    rows = reference[list(ids)].to(chosen.sums.device)
    return Side(rows[:, 0], chosen.tokens), Side(rows[:, 1], rejected.tokens)


#: The losses of the pairs `ids` of a split (`train` or `test`) from both sides' log-probs.
PairLoss = Callable[[str, Sequence[int], Side, Side], PairLosses]


def _detached(result: PairLosses) -> PairLosses:
    """`result` without its graph, on the CPU (to be gathered from the ranks)."""
    return PairLosses(
        result.loss.detach().float().cpu(),
        result.chosen.float().cpu(),
        result.rejected.float().cpu(),
        {name: part.float().cpu() for name, part in result.parts.items()},
    )


def _pair_metrics(results: Sequence[PairLosses], prefix: str = "") -> dict[str, float]:
    loss = torch.cat([r.loss.detach().float().cpu() for r in results])
    chosen = torch.cat([r.chosen.float().cpu() for r in results])
    rejected = torch.cat([r.rejected.float().cpu() for r in results])
    metrics = {f"{prefix}loss": float(loss.mean()), **reward_metrics(chosen, rejected, prefix)}
    for name in results[0].parts:
        part = torch.cat([r.parts[name].float().cpu() for r in results])
        metrics[f"{prefix}{name}"] = float(part.mean())
    return metrics


def pair_training(
    loop: Loop,
    model: nn.Module,
    train: Sequence[Pair],
    evals: Sequence[Pair],
    losses: PairLoss,
) -> tuple[StepFunction, EvaluateFunction | None]:
    """The step and evaluation functions of a pairwise recipe (DPO, ORPO) for `Loop.run`:
    each step's loss is the mean of its pairs' `losses` (over every rank's pairs, whose
    results rank 0 gathers for the metrics); an evaluation reports the same metrics on the
    test pairs, prefixed `eval_`."""
    runtime = loop.runtime

    def step(micro_batches: list[list[int]]) -> StepWork:
        ids = [i for batch in micro_batches for i in batch]
        pairs = loop.total(len(ids))  # a rank's share of the step may be empty

        def run(unit: list[int]) -> PairLosses:
            with runtime.autocast():  # autocast is per thread
                chosen, rejected = pair_sides(model, [train[i] for i in unit], runtime)
            result = losses("train", unit, chosen, rejected)
            loop.backward(result.loss.sum() / pairs)
            return _detached(result)

        # On a CPU one pair at a time, two pairs at once (`Runtime.each`).
        results = runtime.each(
            [u for batch in micro_batches if batch for u in units(batch, runtime, len(batch))],
            run,
        )
        everyone = ranks.gathered((results, sum(train[i].tokens for i in ids)))
        metrics = _pair_metrics([result for part, _ in everyone for result in part])
        tokens = sum(count for _, count in everyone)
        return StepWork(loss=metrics.pop("loss"), tokens=tokens, metrics=metrics)

    def evaluate() -> dict[str, float]:
        results = []
        with evaluating(model), runtime.autocast():
            for unit in units(range(len(evals)), runtime, loop.spec.batch_size):
                chosen, rejected = pair_sides(model, [evals[i] for i in unit], runtime)
                results.append(losses("test", unit, chosen, rejected))
        return _pair_metrics(results, "eval_")

    return step, (evaluate if evals else None)


def reward_metrics(
    chosen: torch.Tensor, rejected: torch.Tensor, prefix: str = ""
) -> dict[str, float]:
    """The mean rewards of each side, their margin, and how often chosen beats rejected."""
    return {
        f"{prefix}rewards/chosen": float(chosen.mean()),
        f"{prefix}rewards/rejected": float(rejected.mean()),
        f"{prefix}rewards/margin": float((chosen - rejected).mean()),
        f"{prefix}rewards/accuracy": float((chosen > rejected).float().mean()),
    }


#: Makes a pairwise recipe's `PairLoss` once the model is ready (from the loop, the model, and
#: the training and test pairs: what reference values it needs).
LossMaker = Callable[[Loop, nn.Module, Sequence[Pair], Sequence[Pair]], PairLoss]


def train_pairs(
    spec: TrainingBase,
    model_path: Path,
    train_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    reporter: Reporter,
    workdir: Path,
    checkpoints: Checkpoints | None,
    started: float,
    make_losses: LossMaker,
    what: str,
) -> Outcome:
    """A pairwise recipe's run (DPO, ORPO): the pairs encoded, the model prepared, the loop run
    with the losses `make_losses` makes; `what` names the loss in the log."""
    runtime = runtime_for(spec, per_example=True)  # a pair's passes are its own
    tokenizer = model_tokenizer(model_path)
    train = encode_pairs(train_records, tokenizer, spec.max_length, reporter, "train")
    if not train:
        raise InvalidInput("The training split has no preference pairs to learn from.")
    evals = encode_pairs(
        test_records[: spec.eval_max_examples], tokenizer, spec.max_length, reporter, "test"
    )
    reporter.log(
        f"{len(train)} training and {len(evals)} evaluation pairs; {what}, {spec.method} on "
        f"{runtime.device} in {runtime.precision}"
    )
    model = prepare_model(spec, model_path, runtime)
    loop = Loop(
        spec, model, model_path, runtime, reporter, workdir, checkpoints, len(train), started
    )
    step, evaluate = pair_training(
        loop, model, train, evals, make_losses(loop, model, train, evals)
    )
    return loop.run(
        step,
        evaluate,
        eval_tokens=sum(pair.tokens for pair in evals),
        samples=loop.sampler(tokenizer, sample_prompts(spec.sample_prompts, test_records)),
    )
