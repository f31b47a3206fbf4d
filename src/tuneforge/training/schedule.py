"""The step plan of a run: how many steps, which examples each step sees, and its learning rate.

Everything here is a pure function of the spec and the step number, so a resumed run sees exactly
the examples and learning rates the uninterrupted run would have seen (the scheduler's state is
the step itself).

A run over several processes (`world` > 1, see `training/parallel/`) plans micro-batches of
`batch_size x world` examples, of which each rank takes its `share`: the steps and the examples
each step sees are those of one process with a `world` times larger batch, so a checkpoint
resumes with any number of processes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import cached_property

from tuneforge.training.spec import TrainingBase


@dataclass(frozen=True)
class Plan:
    spec: TrainingBase
    examples: int
    world: int = 1  # processes that share each micro-batch
    _orders: dict[int, list[int]] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def global_batch(self) -> int:
        """Examples in a micro-batch of all ranks together."""
        return self.spec.batch_size * self.world

    @cached_property
    def micro_per_epoch(self) -> int:
        return math.ceil(self.examples / self.global_batch)

    @cached_property
    def total_steps(self) -> int:
        if self.spec.max_steps is not None:
            return self.spec.max_steps
        micro = self.spec.epochs * self.micro_per_epoch
        return max(1, math.ceil(micro / self.spec.gradient_accumulation))

    @cached_property
    def warmup_steps(self) -> int:
        return math.ceil(self.spec.warmup_ratio * self.total_steps)

    def epoch_order(self, epoch: int) -> list[int]:
        """The examples in the order epoch `epoch` visits them (seeded by the spec's seed)."""
        if epoch not in self._orders:
            order = list(range(self.examples))
            random.Random(self.spec.seed * 100_003 + epoch).shuffle(order)  # noqa: S311
            self._orders.clear()  # only the current epoch is ever needed again
            self._orders[epoch] = order
        return self._orders[epoch]

    def micro_batch(self, index: int) -> list[int]:
        """The example indices of micro-batch `index` (of every rank), counted from the start
        of the run."""
        epoch, position = divmod(index, self.micro_per_epoch)
        start = position * self.global_batch
        return self.epoch_order(epoch)[start : start + self.global_batch]

    def share(self, batch: list[int], rank: int) -> list[int]:
        """Rank `rank`'s examples of a micro-batch: its `batch_size` consecutive ones (fewer,
        or none, in an epoch's last micro-batch)."""
        size = self.spec.batch_size
        return batch[rank * size : (rank + 1) * size]

    def step_batches(self, step: int) -> list[list[int]]:
        """The micro-batches of optimizer step `step` (1-based)."""
        accumulation = self.spec.gradient_accumulation
        first = (step - 1) * accumulation
        return [self.micro_batch(first + i) for i in range(accumulation)]

    def epoch_at(self, step: int) -> float:
        """Epochs completed after step `step`."""
        return step * self.spec.gradient_accumulation / self.micro_per_epoch

    def learning_rate(self, step: int) -> float:
        """The learning rate of step `step` (1-based): linear warmup, then the schedule."""
        peak = self.spec.learning_rate
        if step <= self.warmup_steps:
            return peak * step / self.warmup_steps
        if self.spec.scheduler == "constant":
            return peak
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if self.spec.scheduler == "linear":
            return peak * max(0.0, 1.0 - progress)
        return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
