"""The training loop every recipe shares, around the recipe's own step and evaluation.

A recipe encodes its data, prepares its model and gives the loop two functions: one that runs
the forward and backward passes of a step's micro-batches (example indices, chosen by the step
plan) and says what the step's loss was, and one that evaluates on the test split. The loop does
the rest alike for every trainer: the AdamW optimizer and the learning-rate schedule, gradient
clipping, the metrics every run reports (`loss`, `learning_rate`, `grad_norm`, `update_ratio`,
`tokens_per_second`, `epoch`, `eta_seconds`, and system stats now and then), evaluations with
sample answers, early stopping, cancelling, checkpoints and resuming from them (with tensors a
recipe keeps beside them), saving the model and the `Outcome`. The data order and learning rate
are functions of the step, so a resumed run continues exactly where it stopped.

Over several processes (`devices` > 1, `training/parallel/`) each rank runs this loop on its
share of every step's examples: the step function sums its loss denominator over the ranks
(`total`), the gradients are summed over them before each update, so every rank makes the same
update; rank 0 alone evaluates, reports, writes checkpoints and saves the model, and a cancel
request or an early stop it sees stops every rank at the same step.
"""

from __future__ import annotations

import itertools
import math
import resource
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from tokenizers import Tokenizer
from torch import nn

from tuneforge.errors import InvalidInput, JobCancelled
from tuneforge.training.checkpoint import (
    LoopState,
    UnreadableCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from tuneforge.training.components.saving import save_model
from tuneforge.training.evaluation import SamplePrompt, generate
from tuneforge.training.parallel import ranks, sharding
from tuneforge.training.recipe import Checkpoints, Outcome
from tuneforge.training.reporting import Reporter, system_stats
from tuneforge.training.runtime import Runtime, trainable_parameters
from tuneforge.training.schedule import Plan
from tuneforge.training.spec import TrainingBase

if TYPE_CHECKING:
    from tuneforge.training.components.vision import ImageInputs

SYSTEM_EVERY = 10.0  # seconds between system stats
WATCHED_ELEMENTS = 20_000_000  # weights whose change per step is measured (update_ratio)


@dataclass
class StepWork:
    """What a recipe's step did: its loss (the mean the gradient is of), the tokens it passed
    through the model (for the throughput), and metrics of its own (`rewards/margin`, ...)."""

    loss: float
    tokens: int
    metrics: dict[str, float] = field(default_factory=dict)


#: Runs the forward and backward passes of a step's micro-batches (lists of example indices),
#: calling `Loop.backward` on each loss it computes.
StepFunction = Callable[[list[list[int]]], StepWork]
#: The metrics of an evaluation on the test split (named `eval_...`).
EvaluateFunction = Callable[[], dict[str, float]]


class Loop:
    """The optimizer, the step plan and the loop's state for `model` (prepared, trainable);
    resumed from `checkpoints.latest` when there is one."""

    def __init__(
        self,
        spec: TrainingBase,
        model: nn.Module,
        model_path: Path,
        runtime: Runtime,
        reporter: Reporter,
        workdir: Path,
        checkpoints: Checkpoints | None,
        examples: int,
        started: float,
    ) -> None:
        self.spec, self.model, self.model_path = spec, model, model_path
        self.runtime, self.reporter, self.workdir = runtime, reporter, workdir
        self.checkpoints = checkpoints or Checkpoints()
        self.started = started
        self.phases: dict[str, float] = {}
        self.rank, self.world = ranks.position()
        self.first = self.rank == 0  # the rank that reports, evaluates and saves
        self.sharded = sharding.is_sharded(model)
        #: Whether this rank evaluates: rank 0, or every rank of a sharded model (each forward
        #: pass of which needs them all).
        self.evaluates = self.first or self.sharded
        self.parameters = [p for _, p in trainable_parameters(model)]
        reporter.log(
            f"training {sum(p.numel() for p in self.parameters):,} of "
            f"{sum(p.numel() for p in model.parameters()):,} parameters"
            + (f" (this process's shard: 1/{self.world})" if self.sharded else "")
        )
        self.watched = _watched(self.parameters)
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=spec.learning_rate, weight_decay=spec.weight_decay
        )
        self.scaler = torch.amp.GradScaler(runtime.device, enabled=runtime.precision == "fp16")
        self.plan = Plan(spec, examples, self.world)
        self.state = LoopState()
        #: Tensors the recipe keeps with every checkpoint (restored on resume).
        self.kept: dict[str, torch.Tensor] = {}
        # Rank 0 resumes; the others are given what it resumed.
        latest = self.checkpoints.latest if self.first else None
        if not self.sharded:
            if latest is not None:
                self._resume(latest)
            if self.world > 1:
                self.state, self.kept = ranks.share_state(
                    self.parameters, (self.state, self.kept), self.optimizer
                )
        else:
            saved: list[dict[str, Any]] = []  # the whole optimizer state, on rank 0
            with sharding.whole(model, True):
                if latest is not None:
                    self._resume(latest, saved.append)
                self.state, self.kept = sharding.share_whole(
                    self.parameters, (self.state, self.kept)
                )
            sharding.load_sharded_optimizer(model, self.optimizer, saved[0] if saved else None)
        #: The evaluation metric early stopping watches, and whether lower or higher is better.
        self.watch: tuple[str, Literal["min", "max"]] = ("eval_loss", "min")
        self._latest_eval: dict[str, float] = {}
        self._evaluation_seconds: list[float] = []

    def _resume(
        self, latest: Path, load_optimizer: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """Load the newest readable checkpoint, saying which ones could not be read
        (`load_optimizer`: takes the optimizer's state instead of the optimizer)."""
        problems: list[str] = []
        for path in itertools.chain([latest], self.checkpoints.older):
            try:
                self.state, self.kept = load_checkpoint(
                    path, self.model, self.optimizer, load_optimizer
                )
            except UnreadableCheckpoint as exc:
                which = "newest checkpoint" if not problems else "checkpoint before it"
                problems.append(str(exc))
                self.reporter.log(
                    f"The {which} cannot be read ({exc}); looking for an older one.",
                    level="warning",
                )
                continue
            self.reporter.log(f"resumed from step {self.state.step} of {self.plan.total_steps}")
            return
        raise InvalidInput(
            f"None of this run's {len(problems)} checkpoint(s) can be read (the newest: "
            f"{problems[0]}). Start the run again from the beginning."
        )

    def add(self, phase: str, amount: float) -> None:
        """Count `amount` (seconds, tokens, ...) into one of the outcome's phases."""
        self.phases[phase] = self.phases.get(phase, 0.0) + amount

    def backward(self, loss: torch.Tensor) -> None:
        """The backward pass of a loss (scaled for fp16), its gradients added to the step's."""
        if self.sharded:  # FSDP averages the ranks' gradients: the loop sums them
            loss = loss * self.world
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]

    def idle_passes(self, passes: int) -> int:
        """How many passes that change nothing this rank must add to its `passes` to run as
        many as every other rank: a sharded model's passes need every rank (0 otherwise)."""
        if not self.sharded:
            return 0
        return round(ranks.most(float(passes))) - passes

    def total(self, value: float) -> float:
        """`value` (a step's loss tokens, its loss sum) summed over the ranks: a step function
        divides its losses by the total of the ranks' tokens, so that their gradients add up
        to the gradient of one process with every rank's examples."""
        return ranks.total(value) if self.world > 1 else value

    def update(self) -> float:
        """One optimizer update from the gradients added so far (unscaled, clipped to
        `max_grad_norm`), which it then clears; returns the gradient norm before clipping.
        `run` updates after each step function; a step function may update before that too
        (several updates on one batch of generated completions)."""
        if self.world > 1 and not self.sharded:
            ranks.sum_gradients(self.parameters)
        self.scaler.unscale_(self.optimizer)
        limit = self.spec.max_grad_norm if self.spec.max_grad_norm > 0 else math.inf
        if self.sharded:  # the norm of the whole gradient, from every rank's shard
            grad_norm = float(self.model.clip_grad_norm_(limit))  # type: ignore[operator]
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, limit))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def checkpoint(self) -> None:
        """Write a checkpoint (rank 0; the same files whatever the number of ranks)."""
        started = time.perf_counter()
        step = self.state.step
        optimizer_state = sharding.optimizer_state(self.model, self.optimizer, self.sharded)
        if self.first:
            self.reporter.progress(
                step / self.plan.total_steps, f"saving a checkpoint at step {step}"
            )
        with sharding.whole(self.model, self.sharded, writeback=False):
            if not self.first:
                return
            path = save_checkpoint(
                self.workdir / "checkpoints" / "latest",
                self.model,
                self.optimizer,
                self.state,
                self.kept,
                optimizer_state,
            )
        if self.checkpoints.save is not None:
            self.checkpoints.save(path, step)
        self.add("checkpoint_seconds", time.perf_counter() - started)
        self.add("checkpoints", 1)

    def _evaluation(
        self,
        evaluate: EvaluateFunction | None,
        eval_tokens: int,
        samples: Callable[[], list[dict[str, Any]]] | None,
    ) -> bool:
        """Report an evaluation and sample answers; True when early stopping says stop."""
        spec, state = self.spec, self.state
        fraction = state.step / self.plan.total_steps
        started = time.perf_counter()
        values: dict[str, float] = {}
        if evaluate is not None:
            self.reporter.progress(fraction, f"evaluating at step {state.step}")
            values = evaluate()
            self.add("eval_seconds", time.perf_counter() - started)
            self.add("eval_tokens", eval_tokens)
        if values:
            self.reporter.metrics(values, state.step)
            self._latest_eval.update(values)
        if samples is not None:
            self.reporter.progress(fraction, "answering the sample prompts")
            sampling = time.perf_counter()
            answers = samples()
            self.add("sample_seconds", time.perf_counter() - sampling)
            self.add("sample_tokens", len(answers) * spec.sample_max_new_tokens)
            self.reporter.samples(state.step, answers)
        self._evaluation_seconds.append(time.perf_counter() - started)
        name, direction = self.watch
        value = values.get(name)
        if value is None or spec.early_stopping_patience is None:
            return False
        # The state keeps the best value as a loss: lower is better.
        loss = value if direction == "min" else -value
        if state.best_eval_loss is None or loss < state.best_eval_loss:
            state.best_eval_loss, state.evaluations_without_improvement = loss, 0
            return False
        state.evaluations_without_improvement += 1
        return state.evaluations_without_improvement >= spec.early_stopping_patience

    def sampler(
        self,
        tokenizer: Tokenizer,
        prompts: Sequence[SamplePrompt],
        images: ImageInputs | None = None,
    ) -> Callable[[], list[dict[str, Any]]] | None:
        """Greedy answers to the sample prompts, for `run`; None when there are none or the
        spec turns sample answers off. `images`: a vision model's image inputs, for prompts
        with images."""
        if not prompts or not self.spec.sample_answers:
            return None
        if self.sharded:  # generating would need every rank in step, token by token
            self.reporter.log("No sample answers while the model is sharded over several GPUs.")
            return None
        spec = self.spec

        def answer() -> list[dict[str, Any]]:
            return generate(
                self.model, tokenizer, prompts, spec.sample_max_new_tokens, self.runtime, images
            )

        return answer

    def run(
        self,
        step_function: StepFunction,
        evaluate: EvaluateFunction | None = None,
        eval_tokens: int = 0,
        samples: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> Outcome:
        """Train to the plan's last step (or an early stop), then evaluate and save the model."""
        spec, plan, state, reporter = self.spec, self.plan, self.state, self.reporter
        self.add("load_seconds", time.perf_counter() - self.started)
        self.model.train()
        step_seconds: list[float] = []
        step_rates: list[float] = []
        last_system = 0.0
        last_metrics: dict[str, float] = {}
        stopped_early = False
        if state.step == 0 and evaluate is not None and spec.eval_every and self.evaluates:
            self._evaluation(evaluate, eval_tokens, samples)  # where the model starts
        while state.step < plan.total_steps:
            step = state.step + 1
            started = time.perf_counter()
            learning_rate = plan.learning_rate(step)
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
            before = [p.detach().clone() for p in self.watched]
            batches = plan.step_batches(step)
            if self.world > 1:
                batches = [plan.share(batch, self.rank) for batch in batches]
            work = step_function(batches)
            grad_norm = self.update()
            elapsed = time.perf_counter() - started
            state.step = step
            state.tokens_seen += work.tokens
            state.seconds += elapsed
            step_seconds.append(elapsed)
            step_rates.append(work.tokens / elapsed)
            evaluations_left = _evaluations_left(spec.eval_every, step, plan.total_steps)
            last_metrics = {
                "loss": work.loss,
                **work.metrics,
                "learning_rate": learning_rate,
                "grad_norm": grad_norm,
                "update_ratio": _update_ratio(before, self.watched),
                "tokens_per_second": work.tokens / elapsed,
                "epoch": plan.epoch_at(step),
                "eta_seconds": (plan.total_steps - step) * statistics.fmean(step_seconds[-20:])
                + evaluations_left * _mean(self._evaluation_seconds),
            }
            if time.monotonic() - last_system >= SYSTEM_EVERY:
                last_system = time.monotonic()
                last_metrics.update(system_stats())
            reporter.metrics(last_metrics, step)
            reporter.progress(
                step / plan.total_steps, f"step {step}/{plan.total_steps} · loss {work.loss:.4f}"
            )
            if math.isnan(work.loss):
                raise InvalidInput(
                    f"The loss became NaN at step {step}: lower the learning rate "
                    f"(now {spec.learning_rate:g}) or use fp32.",
                    {"fields": ["learning_rate", "precision"]},
                )
            if spec.eval_every and step % spec.eval_every == 0 and step < plan.total_steps:
                if self.evaluates:
                    stopped_early = self._evaluation(evaluate, eval_tokens, samples)
                if self.world > 1:
                    stopped_early = ranks.any_rank(stopped_early)
                if stopped_early:
                    reporter.log(
                        f"stopping early: no better {self.watch[0]} for "
                        f"{spec.early_stopping_patience} evaluations"
                    )
                    break
            cancel = reporter.cancel_requested
            if self.world > 1:
                cancel = ranks.any_rank(cancel)
            if cancel:
                self.checkpoint()
                raise JobCancelled(f"cancelled at step {step}; resume continues from there")
            if step % spec.checkpoint_every == 0 and step < plan.total_steps:
                self.checkpoint()
        if not stopped_early and self.evaluates:
            self._evaluation(evaluate, eval_tokens, samples)
        final = {**last_metrics, **self._latest_eval}
        reporter.progress(1.0, "saving the model: writing its weights")
        saving = time.perf_counter()
        output = self.workdir / "model"
        weights = sharding.whole_state_dict(self.model) if self.sharded else None
        if self.first:
            model = sharding.unwrapped(self.model)
            output = save_model(spec, model, self.model_path, output, weights)
        self.add("save_seconds", time.perf_counter() - saving)
        rates = step_rates[1:] or step_rates  # the first step warms caches up
        return Outcome(
            kind="full" if spec.method == "full" else "adapter",
            device=self.runtime.device,
            precision=self.runtime.precision,
            output=output,
            steps=state.step,
            epochs=plan.epoch_at(state.step),
            metrics={k: v for k, v in final.items() if not k.startswith("system/")},
            tokens_per_second=statistics.median(rates) if rates else 0.0,
            tokens=state.tokens_seen,
            train_seconds=state.seconds,
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            stopped_early=stopped_early,
            step_seconds=step_seconds,
            phases=self.phases,
        )


def mean_metrics(values: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over `values` (all with the same names)."""
    if not values:
        return {}
    return {name: statistics.fmean(v[name] for v in values) for name in values[0]}


def _watched(parameters: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The trained tensors whose change each step is measured: all of a LoRA's, the first
    `WATCHED_ELEMENTS` of a full fine-tune's (a copy of every weight would double the memory)."""
    watched: list[torch.Tensor] = []
    elements = 0
    for parameter in parameters:
        if elements + parameter.numel() > WATCHED_ELEMENTS and watched:
            break
        watched.append(parameter)
        elements += parameter.numel()
    return watched


def _update_ratio(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> float:
    """How far one step moved the weights, relative to their size (healthy: about 1e-3)."""
    with torch.no_grad():
        pairs = zip(after, before, strict=True)
        change = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in pairs)
        size = sum(float(b.float().pow(2).sum()) for b in before)
    return math.sqrt(change) / max(math.sqrt(size), 1e-12)


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _evaluations_left(eval_every: int, step: int, total: int) -> int:
    """Evaluations still to come after `step`: the periodic ones and the final one."""
    periodic = (total - 1) // eval_every - step // eval_every if eval_every else 0
    return max(periodic, 0) + 1
