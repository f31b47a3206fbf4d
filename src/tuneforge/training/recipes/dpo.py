"""Direct preference optimisation (and IPO, SimPO): the recipe that registers it as `dpo`.

A loop of our own, like SFT's and for the same reasons (`bench/preference_throughput.py`
measures it against TRL's `DPOTrainer`): the frozen base in bf16 where the hardware has it,
each answer's passes without padding, and the output head only on the answers' tokens
(`components/logprobs.py`). The reference log-probabilities come from the starting model, once,
before the first step, and travel with the checkpoints (`components/preference.py`); SimPO needs
none. The rest of the loop is shared (`components/loop.py`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.training.recipe import Batching, Checkpoints, Outcome, Recipe
from tuneforge.training.spec import DPOSpec, TrainingBase
from tuneforge.training.spec_checks import DatasetFacts, Finding

if TYPE_CHECKING:
    from torch import nn

    from tuneforge.training.components.completions import Pair
    from tuneforge.training.components.loop import Loop
    from tuneforge.training.components.preference import PairLoss
    from tuneforge.training.components.preference_loss import PairLosses, Side
    from tuneforge.training.reporting import Reporter


def train_dpo(
    spec: DPOSpec,
    model_path: Path,
    train_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    reporter: Reporter,
    workdir: Path,
    checkpoints: Checkpoints | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Outcome:
    del secrets  # DPO calls no judge
    loading = time.perf_counter()  # importing torch counts as loading
    from tuneforge.training.components.preference import (
        pair_reference,
        reference_sides,
        train_pairs,
    )
    from tuneforge.training.components.preference_loss import dpo_loss

    def make_losses(
        loop: Loop, model: nn.Module, train: Sequence[Pair], evals: Sequence[Pair]
    ) -> PairLoss:
        references = {}
        if spec.loss_type != "simpo":  # SimPO needs no reference
            references = {
                "train": pair_reference(loop, model, train, "train"),
                "test": pair_reference(loop, model, evals, "test"),
            }

        def losses(split: str, ids: Sequence[int], chosen: Side, rejected: Side) -> PairLosses:
            reference_chosen = reference_rejected = None
            if references:
                reference_chosen, reference_rejected = reference_sides(
                    references[split], ids, chosen, rejected
                )
            return dpo_loss(
                chosen,
                rejected,
                reference_chosen,
                reference_rejected,
                spec.beta,
                spec.loss_type,
                spec.label_smoothing,
                spec.simpo_gamma,
            )

        return losses

    return train_pairs(
        spec,
        model_path,
        train_records,
        test_records,
        reporter,
        workdir,
        checkpoints,
        loading,
        make_losses,
        f"{spec.loss_type} loss with beta {spec.beta:g}",
    )


def _batching(spec: DPOSpec) -> Batching:
    # The reference passes (chosen and rejected) run once for the whole run, before it starts.
    passes = 0.0 if spec.loss_type == "simpo" else 2.0 / epochs_of(spec)
    return Batching(packed=True, answers_only=True, sequences=2.0, reference_passes=passes)


def epochs_of(spec: TrainingBase) -> float:
    """The passes over the data the run makes (at least one, as far as the data's size is
    unknown: with max steps set, the estimate assumes one)."""
    return max(spec.epochs, 1.0) if spec.max_steps is None else 1.0


def check_pairs(spec: TrainingBase, facts: DatasetFacts) -> list[Finding]:
    """Without a test split a run cannot say how often it prefers the chosen answer of pairs
    it has not seen."""
    stats = facts.stats
    if stats is None or stats.rows.get("test", 0) > 0:
        return []
    return [
        Finding(
            ("dataset_id",),
            "The dataset has no test split: the run can report its preference accuracy only on "
            "the pairs it trains on, which says little. Process the dataset with a test split "
            "to see eval_rewards/accuracy on held-out pairs.",
        )
    ]


RECIPE = Recipe(
    trainer="dpo",
    title="Direct preference optimisation (DPO)",
    description="Learns from pairs of a chosen and a rejected answer to the same prompt to "
    "prefer answers like the chosen ones; best after SFT, starting from its model.",
    spec=DPOSpec,
    train=train_dpo,
    batching=_batching,
    data=("preference",),
    check=check_pairs,
    presets="{model}_{method}_dpo",
    distributed=True,
)
