"""What a training recipe is: one method (SFT, and later DPO, ORPO, KTO, GRPO) as a typed record.

A recipe names its `trainer`, says what it is for, and brings its spec (a subclass of
`TrainingBase` whose `trainer` field is a literal of that name), its run function, how its
batches look to the estimate, and how its presets are named. The registry
(`training/registry.py`) collects the recipes of `training/recipes/`; the spec union, the Train
form, the CLI options, presets, recommendations, estimates and the spec docs all read it.

A recipe's module must stay light to import (no torch): its run function imports the heavy parts
when it runs, in the worker process or in `tuneforge train`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from tuneforge.training.spec import METHODS, TrainingBase
from tuneforge.training.spec_checks import DatasetFacts, Finding

if TYPE_CHECKING:
    from tuneforge.evaluation.judge import JudgeSpec
    from tuneforge.training.reporting import Reporter

SpecT = TypeVar("SpecT", bound=TrainingBase)
SpecT_contra = TypeVar("SpecT_contra", bound=TrainingBase, contravariant=True)
#: How a catalog model id looks in a preset id (no `_`: it separates the parts).
MODEL_ID = r"[a-z0-9][a-z0-9.\-]*"


@dataclass(frozen=True)
class Batching:
    """How a recipe feeds examples to the model, as far as memory and speed go."""

    packed: bool  # padding-free batches: no compute is spent on padding
    answers_only: bool  # the loss (and the output head) runs only on the answers' tokens
    #: Sequences trained (forward and backward) per example: 1 for SFT, 2 for a preference
    #: pair (chosen and rejected), the generations per prompt for GRPO.
    sequences: float = 1.0
    #: Forward-only passes per example, without gradients (a reference model's log-probs).
    reference_passes: float = 0.0
    #: Tokens generated per example in a step (GRPO's completions: generations x length).
    generated_tokens: int = 0


@dataclass
class Checkpoints:
    """Where checkpoints go: `save(path, step)` is called after each one is written locally."""

    latest: Path | None = None  # resume from here
    save: Callable[[Path, int], None] | None = None
    #: The checkpoints before `latest`, newest first (each may be fetched as the iteration
    #: reaches it): where resuming falls back when `latest` cannot be read.
    older: Iterable[Path] = ()


@dataclass
class Outcome:
    """What a finished run reports."""

    kind: str  # adapter | full
    device: str
    precision: str
    output: Path  # the model directory (adapter or weights, with tokenizer)
    steps: int
    epochs: float
    metrics: dict[str, float]
    tokens_per_second: float  # the median step's
    tokens: int  # tokens trained on (no padding), over every attempt
    train_seconds: float  # time in optimizer steps (no loading, evaluation or saving)
    peak_rss_bytes: int
    stopped_early: bool = False
    step_seconds: list[float] = field(default_factory=list)
    #: Seconds and amounts of the work around the steps (this attempt's), for the estimates:
    #: load_seconds, eval_seconds, eval_tokens, sample_seconds, sample_tokens,
    #: checkpoint_seconds, checkpoints, save_seconds
    phases: dict[str, float] = field(default_factory=dict)


class Train(Protocol[SpecT_contra]):
    """A recipe's run function: trains `model_path` on the records, reporting to `reporter`,
    working under `workdir`, resuming from and saving `checkpoints`; the model it makes is in
    the outcome's `output` directory. `secrets` holds the values of the owner's secrets that
    the recipe's `judges` name (their API keys)."""

    def __call__(
        self,
        spec: SpecT_contra,
        model_path: Path,
        train_records: Sequence[Mapping[str, Any]],
        test_records: Sequence[Mapping[str, Any]],
        reporter: Reporter,
        workdir: Path,
        checkpoints: Checkpoints | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> Outcome: ...


@dataclass(frozen=True)
class Recipe(Generic[SpecT]):
    """One training method: its name, its spec, its run function, its batches and presets."""

    trainer: str  # the spec's `trainer` value, which chooses this recipe
    title: str  # a few words for pickers: "Supervised fine-tuning (SFT)"
    description: str  # one or two sentences on what it learns from and what it is for
    spec: type[SpecT]
    train: Train[SpecT]
    batching: Callable[[SpecT], Batching]
    #: The processing modes (`data/mapping.py`) of the datasets it learns from.
    data: tuple[str, ...] = ("conversation", "language_modeling")
    #: What is wrong with a spec for a dataset, beyond the checks every recipe shares
    #: (`training/spec_checks.py`): warnings and refusals that name their fields.
    check: Callable[[SpecT, DatasetFacts], list[Finding]] | None = None
    #: The LLM judges a run of this spec calls (a GRPO grader, say): their endpoints are
    #: checked at launch and again in the worker, their key secrets must be set, and the run
    #: gets the keys' values as `secrets`.
    judges: Callable[[SpecT], Sequence[JudgeSpec]] | None = None
    #: How the ids of its presets (`training/presets/<id>.yaml`) are formed from a catalog
    #: model id and a method; ids must be told apart from other recipes' ids.
    presets: str = "{model}_{method}"
    #: Whether it trains over several processes (`devices` > 1): its step function takes the
    #: loss denominator over every rank's share (`Loop.total`).
    distributed: bool = False

    def __post_init__(self) -> None:
        declared = self.spec.model_fields["trainer"].default
        if declared != self.trainer:
            raise ValueError(
                f"The recipe {self.trainer!r} has a spec whose trainer is {declared!r}."
            )

    def preset_id(self, model: str, method: str) -> str:
        """The id of this recipe's preset for a catalog model and method."""
        return self.presets.format(model=model, method=method)

    def preset_parts(self, preset_id: str) -> tuple[str, str] | None:
        """(model, method) of one of this recipe's preset ids; None for another id."""
        pattern = re.escape(self.presets).replace(re.escape("{model}"), f"({MODEL_ID})")
        pattern = pattern.replace(re.escape("{method}"), f"({'|'.join(METHODS)})")
        found = re.fullmatch(pattern, preset_id)
        return (found.group(1), found.group(2)) if found else None
