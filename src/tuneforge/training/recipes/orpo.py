"""Odds-ratio preference optimisation: the recipe that registers it as `orpo`.

One stage instead of SFT then DPO: the loss is the chosen answer's language-modelling loss plus
a term that raises its odds against the rejected answer's. No reference model, so no reference
passes. The passes, the metrics and the rest of the loop are those of DPO
(`components/preference.py`, `components/loop.py`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.training.recipe import Batching, Checkpoints, Outcome, Recipe
from tuneforge.training.recipes.dpo import check_pairs
from tuneforge.training.spec import ORPOSpec

if TYPE_CHECKING:
    from torch import nn

    from tuneforge.training.components.completions import Pair
    from tuneforge.training.components.loop import Loop
    from tuneforge.training.components.preference import PairLoss
    from tuneforge.training.components.preference_loss import PairLosses, Side
    from tuneforge.training.reporting import Reporter


def train_orpo(
    spec: ORPOSpec,
    model_path: Path,
    train_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    reporter: Reporter,
    workdir: Path,
    checkpoints: Checkpoints | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Outcome:
    del secrets  # ORPO calls no judge
    loading = time.perf_counter()  # importing torch counts as loading
    from tuneforge.training.components.preference import train_pairs
    from tuneforge.training.components.preference_loss import orpo_loss

    def make_losses(
        loop: Loop, model: nn.Module, train: Sequence[Pair], evals: Sequence[Pair]
    ) -> PairLoss:
        def losses(split: str, ids: Sequence[int], chosen: Side, rejected: Side) -> PairLosses:
            return orpo_loss(chosen, rejected, spec.beta)

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
        f"ORPO with lambda {spec.beta:g}",
    )


def _batching(spec: ORPOSpec) -> Batching:
    return Batching(packed=True, answers_only=True, sequences=2.0)


RECIPE = Recipe(
    trainer="orpo",
    title="Odds-ratio preference optimisation (ORPO)",
    description="Learns the chosen answers of preference pairs and to prefer them over the "
    "rejected ones, in one stage from a base model, without a reference model.",
    spec=ORPOSpec,
    train=train_orpo,
    batching=_batching,
    data=("preference",),
    check=check_pairs,
    presets="{model}_{method}_orpo",
    distributed=True,
)
