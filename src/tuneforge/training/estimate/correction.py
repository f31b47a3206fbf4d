"""How runs measured on this machine correct the model's figures, for the shape measured and for
shapes not measured yet.

The model splits each figure in two parts that follow the run's shape differently:

* peak memory: a fixed part (weights, trained state, runtime) and a part that grows with the
  micro-batch (activations, logits, the allocator's slack, images);
* a step's time: a fixed part (the step's Python, optimizer and hook overhead) and a part that
  grows with its tokens (their FLOPs at the modelled speed).

A correction is a factor for each part, fitted to the measured runs of one machine, model,
method and setup (the calibration key), so a run with another batch size or max length is
corrected too: its parts are the model's, their factors the measured ones. The fit:

* each shape's runs count once, as the median of their measured/modelled ratios: a run slowed
  by a busy machine moves nothing while the shape has three runs, and a shape run many times
  does not outweigh the others;
* the factors minimise the relative error over the shapes, pulled towards the overall ratio
  (the median over shapes) by a small penalty: a single shape, or shapes whose parts are mixed
  alike, cannot tell the parts apart, and then both parts take the overall ratio, which is
  exact at the shapes measured;
* a factor stays within `LIMIT` times the overall ratio either way, so two close shapes with
  noisy measurements cannot send an unmeasured one's figure far off.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from pydantic import BaseModel, Field

#: The penalty pulling both factors towards the overall ratio (against squared relative errors).
PULL = 1e-3
#: How far a part's factor may stray from the overall ratio, as a multiple either way.
LIMIT = 4.0


class Measured(BaseModel):
    """One figure of one run: the model's two parts and what was measured."""

    shape: str = Field(description="The run's shape (batch size, max length, ...).")
    fixed: float = Field(ge=0, description="The model's part that the shape does not change.")
    varying: float = Field(ge=0, description="The model's part that grows with the shape.")
    measured: float = Field(gt=0, description="What the run measured.")

    @property
    def ratio(self) -> float:
        return self.measured / max(self.fixed + self.varying, 1e-12)


class Correction(BaseModel):
    """Factors on the model's two parts, fitted to measured runs."""

    fixed: float = Field(description="The factor on the fixed part.")
    varying: float = Field(description="The factor on the part that grows with the shape.")
    runs: int = Field(description="How many measured runs it was fitted to.")

    def apply(self, fixed: float, varying: float) -> float:
        return self.fixed * fixed + self.varying * varying


def fit(runs: Sequence[Measured]) -> Correction | None:
    """The correction fitted to `runs` (see the module docstring); None without runs."""
    if not runs:
        return None
    shapes: dict[str, list[Measured]] = defaultdict(list)
    for run in runs:
        shapes[run.shape].append(run)
    # one row per shape: its parts (means) relative to its measurement (the median ratio's)
    rows: list[tuple[float, float]] = []
    ratios: list[float] = []
    for same in shapes.values():
        ratio = statistics.median(run.ratio for run in same)
        fixed = statistics.fmean(run.fixed for run in same)
        varying = statistics.fmean(run.varying for run in same)
        measured = ratio * (fixed + varying)
        rows.append((fixed / measured, varying / measured))
        ratios.append(ratio)
    overall = statistics.median(ratios)
    # minimise sum((overall * (x * a + y * b) - 1)^2) + PULL * ((x - 1)^2 + (y - 1)^2)
    aa = overall**2 * sum(a * a for a, _ in rows) + PULL
    bb = overall**2 * sum(b * b for _, b in rows) + PULL
    ab = overall**2 * sum(a * b for a, b in rows)
    ra = overall * sum(a for a, _ in rows) + PULL
    rb = overall * sum(b for _, b in rows) + PULL
    determinant = aa * bb - ab * ab
    x = (ra * bb - rb * ab) / determinant
    y = (rb * aa - ra * ab) / determinant

    def bounded(factor: float) -> float:
        return overall * min(max(factor, 1 / LIMIT), LIMIT)

    return Correction(fixed=bounded(x), varying=bounded(y), runs=len(runs))
