"""One rank's training: what every rank of a run trains (`RankTask`), the entry point any
launcher calls with the rank contract in the environment (`train_rank`), the reporter of the
ranks that do not report, and the message by which a failed rank says why (`failure`)."""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import DomainError, JobCancelled
from tuneforge.training.parallel.ranks import PeerFailed, Rank, process_group
from tuneforge.training.recipe import Checkpoints, Outcome
from tuneforge.training.spec import TrainingBase

if TYPE_CHECKING:
    from tuneforge.training.reporting import Reporter


class SilentReporter:
    """The reporter of ranks other than 0: rank 0 reports for the run."""

    def progress(self, fraction: float, message: str | None = None) -> None:
        pass

    def metrics(self, values: dict[str, float], step: int) -> None:
        pass

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass

    @property
    def cancel_requested(self) -> bool:
        return False  # rank 0's request reaches every rank through the loop


@dataclass(frozen=True)
class RankTask:
    """What every rank of a run trains (picklable: it crosses to the rank's process)."""

    spec: TrainingBase
    model_path: Path
    train_records: list[dict[str, Any]]
    test_records: list[dict[str, Any]]
    workdir: Path
    secrets: dict[str, str] = field(default_factory=dict)


def train_rank(
    task: RankTask, reporter: Reporter, checkpoints: Checkpoints | None = None
) -> Outcome:
    """One rank's training, with the rank contract in the environment (`Rank.from_env`):
    joins the process group, runs the recipe and leaves the group. Only rank 0 uses
    `reporter` and `checkpoints`; its outcome is the run's (its `output` the saved model)."""
    import torch

    from tuneforge.training.registry import recipe_for

    rank = Rank.from_env()
    cuda = torch.cuda.is_available()
    if not cuda:  # the ranks on one machine share its cores
        from tuneforge.hardware import detect_hardware

        local = int(os.environ.get("LOCAL_WORLD_SIZE") or rank.world_size)
        torch.set_num_threads(max(1, detect_hardware().cores // local))
    first = rank.rank == 0
    with process_group(rank, cuda):
        return recipe_for(task.spec).train(
            task.spec,
            task.model_path,
            task.train_records,
            task.test_records,
            reporter if first else SilentReporter(),
            task.workdir,
            checkpoints if first else None,
            secrets=task.secrets,
        )


def failure(rank: int, exc: BaseException) -> tuple[Any, ...]:
    """The message by which a rank tells the supervisor why it failed."""
    if not isinstance(exc, JobCancelled | DomainError):
        traceback.print_exc(file=sys.stderr)
    details = exc.details if isinstance(exc, DomainError) else {}
    return ("failed", rank, type(exc).__name__, str(exc), details, isinstance(exc, PeerFailed))
