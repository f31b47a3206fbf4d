"""Supervised fine-tuning: setup, train, save; and the recipe that registers it as `sft`.

A loop of our own rather than TRL's `SFTTrainer`, because on CPUs it is several times faster for
the same result (`bench/train_throughput.py` measures both in one run): the frozen base stays in
bf16 with the trained weights in fp32 under autocast, examples are packed without padding (each
attends only to itself), and the output head runs only where the loss is taken. The data order
and learning rate are functions of the step, so a run resumed from a checkpoint continues exactly
where it stopped. The caller (a job worker, or `tuneforge train`) provides the records, a
`Reporter`, a local working directory and where checkpoints go.

Importing this module costs no torch (the registry imports it to list the trainers): the loop
imports torch and the components when it runs.
"""

from __future__ import annotations

import functools
import math
import resource
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import InvalidInput, JobCancelled
from tuneforge.models.chat_template import GEMMA_CHAT_TEMPLATE, START_OF_TURN
from tuneforge.training.health import NO_CHAT_TEMPLATE
from tuneforge.training.recipe import Batching, Checkpoints, Outcome, Recipe
from tuneforge.training.schedule import Plan
from tuneforge.training.spec import SFTSpec

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from torch import nn

    from tuneforge.training.components.packing import Batch
    from tuneforge.training.components.tokenize import Example
    from tuneforge.training.reporting import Reporter

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SYSTEM_EVERY = 10.0  # seconds between system stats
WATCHED_ELEMENTS = 20_000_000  # weights whose change per step is measured (update_ratio)


def encode_all(
    records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, spec: SFTSpec
) -> list[Example]:
    from tuneforge.training.components.tokenize import encode_record

    examples = []
    for record in records:
        example = encode_record(record, tokenizer, spec.max_length, spec.assistant_only_loss)
        if example is not None:
            examples.append(example)
    return examples


def chat_template_warning(example: Example, tokenizer: Tokenizer) -> str | None:
    """A warning when an encoded example lacks Gemma's turn markers: the model would not learn
    the turns it is asked in, nor where an answer ends."""
    marker = tokenizer.token_to_id(START_OF_TURN)
    if marker is not None and marker in example.input_ids:
        return None
    return (
        f"{NO_CHAT_TEMPLATE}: the first example has no {START_OF_TURN} (it is trained as plain "
        "text, so the model will continue text rather than answer in turns)."
    )


def train_sft(
    spec: SFTSpec,
    model_path: Path,
    train_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    reporter: Reporter,
    workdir: Path,
    checkpoints: Checkpoints | None = None,
) -> Outcome:
    loading = time.perf_counter()  # importing torch counts as loading
    import torch
    from tokenizers import Tokenizer

    from tuneforge.training.checkpoint import LoopState, load_checkpoint, save_checkpoint
    from tuneforge.training.components.loss import causal_lm_loss
    from tuneforge.training.evaluation import evaluate, generate, sample_prompts
    from tuneforge.training.reporting import system_stats
    from tuneforge.training.runtime import prepare_model, runtime_for, trainable_parameters

    checkpoints = checkpoints or Checkpoints()
    phases: dict[str, float] = {}

    def add(name: str, amount: float) -> None:
        phases[name] = phases.get(name, 0.0) + amount

    runtime = runtime_for(spec)
    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    train = encode_all(train_records, tokenizer, spec)
    if not train:
        raise InvalidInput(
            "No training example has tokens to learn from: check that the answers are not empty "
            "and that max length leaves room for them.",
            {"fields": ["max_length"]},
        )
    warning = chat_template_warning(train[0], tokenizer)
    if warning:
        reporter.log(warning, "warning")
    evals = encode_all(test_records[: spec.eval_max_examples], tokenizer, spec)
    prompts = sample_prompts(spec.sample_prompts, test_records)
    reporter.log(
        f"{len(train)} training and {len(evals)} evaluation examples; {spec.method} on "
        f"{runtime.device} in {runtime.precision}" + (" with Unsloth" if runtime.unsloth else "")
    )
    model = prepare_model(spec, model_path, runtime)
    parameters = [p for _, p in trainable_parameters(model)]
    reporter.log(
        f"training {sum(p.numel() for p in parameters):,} of "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    watched = _watched(parameters)
    optimizer = torch.optim.AdamW(parameters, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    scaler = torch.amp.GradScaler(runtime.device, enabled=runtime.precision == "fp16")
    plan = Plan(spec, len(train))
    state = LoopState()
    if checkpoints.latest is not None:
        state = load_checkpoint(checkpoints.latest, model, optimizer)
        reporter.log(f"resumed from step {state.step} of {plan.total_steps}")

    add("load_seconds", time.perf_counter() - loading)

    def checkpoint() -> None:
        started = time.perf_counter()
        reporter.progress(
            state.step / plan.total_steps, f"saving a checkpoint at step {state.step}"
        )
        path = save_checkpoint(workdir / "checkpoints" / "latest", model, optimizer, state)
        if checkpoints.save is not None:
            checkpoints.save(path, state.step)
        add("checkpoint_seconds", time.perf_counter() - started)
        add("checkpoints", 1)

    latest_eval: dict[str, float] = {}
    evaluation_seconds: list[float] = []

    def run_evaluation() -> bool:
        """Report an evaluation; True when early stopping says stop."""
        fraction = state.step / plan.total_steps
        started = time.perf_counter()
        values: dict[str, float] = {}
        if evals:
            reporter.progress(fraction, f"evaluating at step {state.step} ({len(evals)} examples)")
            values = evaluate(model, evals, spec.batch_size, spec.packing, runtime)
            add("eval_seconds", time.perf_counter() - started)
            add("eval_tokens", sum(len(e.input_ids) for e in evals))
        if values:
            reporter.metrics(values, state.step)
            latest_eval.update(values)
        if prompts:
            reporter.progress(fraction, f"answering {len(prompts)} sample prompts")
            sampling = time.perf_counter()
            answers = generate(model, tokenizer, prompts, spec.sample_max_new_tokens, runtime)
            add("sample_seconds", time.perf_counter() - sampling)
            add("sample_tokens", len(prompts) * spec.sample_max_new_tokens)
            reporter.samples(state.step, answers)
        evaluation_seconds.append(time.perf_counter() - started)
        loss = values.get("eval_loss")
        if loss is None or spec.early_stopping_patience is None:
            return False
        if state.best_eval_loss is None or loss < state.best_eval_loss:
            state.best_eval_loss, state.evaluations_without_improvement = loss, 0
            return False
        state.evaluations_without_improvement += 1
        return state.evaluations_without_improvement >= spec.early_stopping_patience

    def forward_backward(batch: Batch, denominator: int) -> float:
        """One pass of `batch`, its gradient added (scaled to a mean over the step's tokens)."""
        with runtime.autocast():
            out = causal_lm_loss(model, batch)
        scaler.scale(out.loss_sum / denominator).backward()  # type: ignore[no-untyped-call]
        return float(out.loss_sum.detach())

    model.train()
    step_seconds: list[float] = []
    step_rates: list[float] = []
    last_system = 0.0
    last_metrics: dict[str, float] = {}
    stopped_early = False
    if state.step == 0 and evals and spec.eval_every:
        run_evaluation()  # where the model starts: the base of the curves
    while state.step < plan.total_steps:
        step = state.step + 1
        started = time.perf_counter()
        batches = [
            batch
            for ids in plan.step_batches(step)
            for batch in runtime.forwards([train[i] for i in ids], spec.packing)
        ]
        loss_tokens = sum(b.loss_tokens for b in batches)
        tokens = sum(b.tokens for b in batches)
        learning_rate = plan.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        loss_sum = runtime.backward_each(
            batches, functools.partial(forward_backward, denominator=max(loss_tokens, 1))
        )
        scaler.unscale_(optimizer)
        limit = spec.max_grad_norm if spec.max_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, limit))
        before = [p.detach().clone() for p in watched]
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        state.step, state.tokens_seen, state.seconds = (
            step,
            state.tokens_seen + tokens,
            state.seconds + elapsed,
        )
        step_seconds.append(elapsed)
        step_rates.append(tokens / elapsed)
        remaining = plan.total_steps - step
        last_metrics = {
            "loss": loss_sum / max(loss_tokens, 1),
            "learning_rate": learning_rate,
            "grad_norm": grad_norm,
            "update_ratio": _update_ratio(before, watched),
            "tokens_per_second": tokens / elapsed,
            "epoch": plan.epoch_at(step),
            "eta_seconds": remaining * statistics.fmean(step_seconds[-20:])
            + _evaluations_left(spec, step, plan.total_steps) * _mean(evaluation_seconds),
        }
        if time.monotonic() - last_system >= SYSTEM_EVERY:
            last_system = time.monotonic()
            last_metrics.update(system_stats())
        reporter.metrics(last_metrics, step)
        reporter.progress(
            step / plan.total_steps,
            f"step {step}/{plan.total_steps} · loss {last_metrics['loss']:.4f}",
        )
        if math.isnan(last_metrics["loss"]):
            raise InvalidInput(
                f"The loss became NaN at step {step}: lower the learning rate "
                f"(now {spec.learning_rate:g}) or use fp32.",
                {"fields": ["learning_rate", "precision"]},
            )
        if spec.eval_every and step % spec.eval_every == 0 and step < plan.total_steps:
            stopped_early = run_evaluation()
            if stopped_early:
                reporter.log(
                    f"stopping early: no better evaluation loss for "
                    f"{spec.early_stopping_patience} evaluations"
                )
                break
        if reporter.cancel_requested:
            checkpoint()
            raise JobCancelled(f"cancelled at step {step}; resume continues from there")
        if step % spec.checkpoint_every == 0 and step < plan.total_steps:
            checkpoint()
    if not stopped_early:
        run_evaluation()
    final = {**last_metrics, **latest_eval}
    reporter.progress(1.0, "saving the model: writing its weights")
    saving = time.perf_counter()
    output = save_model(spec, model, model_path, workdir / "model")
    add("save_seconds", time.perf_counter() - saving)
    rates = step_rates[1:] or step_rates  # the first step warms caches up
    return Outcome(
        kind="full" if spec.method == "full" else "adapter",
        device=runtime.device,
        precision=runtime.precision,
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
        phases=phases,
    )


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
    import torch

    with torch.no_grad():
        pairs = zip(after, before, strict=True)
        change = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in pairs)
        size = sum(float(b.float().pow(2).sum()) for b in before)
    return math.sqrt(change) / max(math.sqrt(size), 1e-12)


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _evaluations_left(spec: SFTSpec, step: int, total: int) -> int:
    """Evaluations still to come after `step`: the periodic ones and the final one."""
    periodic = (total - 1) // spec.eval_every - step // spec.eval_every if spec.eval_every else 0
    return max(periodic, 0) + 1


def save_model(spec: SFTSpec, model: nn.Module, base_path: Path, output: Path) -> Path:
    """The adapter (PEFT safetensors) or the full weights, with the tokenizer and chat template."""
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    if spec.method == "full":
        model.save_pretrained(output)  # type: ignore[operator]
    else:
        peft_config: Any = model.peft_config["default"]  # type: ignore[index]
        peft_config.base_model_name_or_path = spec.base_model
        # The embeddings are frozen: no need to look up the base's config to decide.
        model.save_pretrained(output, save_embedding_layers=False)  # type: ignore[operator]
    for name in TOKENIZER_FILES:
        if (base_path / name).exists():
            shutil.copyfile(base_path / name, output / name)
    (output / "chat_template.jinja").write_text(GEMMA_CHAT_TEMPLATE, encoding="utf-8")
    return output


def _batching(spec: SFTSpec) -> Batching:
    return Batching(packed=spec.packing, answers_only=spec.assistant_only_loss)


RECIPE = Recipe(
    trainer="sft",
    title="Supervised fine-tuning (SFT)",
    description="Learns to answer like the dataset's conversations: the model is shown each "
    "prompt and trained on the answer.",
    spec=SFTSpec,
    train=train_sft,
    batching=_batching,
)
