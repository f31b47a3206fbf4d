"""GRPO: the model answers each prompt several times, the graders score the answers, and it
learns to write more like the answers that scored above their group's mean.

Group relative policy optimisation needs no answers to imitate, only prompts and graders
(`training/rewards/`: a format regex, a number to match, valid JSON, a judge...). Each step
takes `batch_size x gradient_accumulation` prompts (the step plan of every recipe: the data
order and learning rate are functions of the step), samples `num_generations` completions of
each (`components/generation.py`, seeded by the run's seed and the step, so a resumed run
writes the same completions), scores them, and makes `updates_per_generation` updates with the
clipped policy-gradient loss of `components/policy.py`, optionally held near a reference by a KL
term (`beta`). With LoRA the reference is the run's starting point computed with the same
weights (the adapters switched off, or a continued adapter's starting copy), never a second
model in memory.

The data: prompt-only datasets (each row's other columns are the references the graders read,
such as `answer`), or conversations, whose prompt is everything before the last answer and whose
last answer is the `answer` column. Each step reports the mean combined `reward` and its
within-group spread `reward_std` (what GRPO learns from: 0 means every completion of a prompt
scored alike), each grader's `reward/<name>` and `reward/<name>/std` (over all the step's
completions), `completion_length`, `clip_ratio`, and `kl` when beta > 0. Evaluations answer
held-out prompts greedily and report `eval_reward` and `eval_reward/<name>`, with graded samples.

Importing this module costs no torch: the run function imports the heavy parts when it runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, StrictBool, model_validator

from tuneforge.data.conversation import text_of
from tuneforge.errors import InvalidInput
from tuneforge.strict_numbers import Integer, Number
from tuneforge.training.recipe import Batching, Checkpoints, Outcome, Recipe
from tuneforge.training.rewards.spec import ANSWER_COLUMN, Graders
from tuneforge.training.spec import SAMPLES_FROM_TEST, TrainingBase
from tuneforge.training.spec_checks import DatasetFacts, Finding

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from torch import nn

    from tuneforge.evaluation.judge import JudgeSpec
    from tuneforge.training.components.generation import Completions, Sampling
    from tuneforge.training.components.loop import Loop, StepWork
    from tuneforge.training.reporting import Reporter
    from tuneforge.training.rewards.grade import GraderSet, Scores
    from tuneforge.training.runtime import Runtime


def _group(name: str) -> dict[str, Any]:
    return {"group": name}


class GRPOSpec(TrainingBase):
    """GRPO: learn from graded answers of the model's own, on prompts."""

    trainer: Literal["grpo"] = Field(
        default="grpo",
        description="`grpo`: the model answers each prompt several times and learns from the "
        "graders' rewards (no answers to imitate needed).",
        json_schema_extra=_group("run"),
    )
    graders: Graders = Field(
        description="What a good answer is: graders that score each completion from 0 to 1 "
        "(a format regex, a number matching a column, valid JSON, an LLM judge...), each with a "
        "weight; the reward is their weighted sum. Graders that read a column need it in the "
        "dataset (a conversation dataset's last answer is the `answer` column).",
        json_schema_extra=_group("rewards"),
    )
    num_generations: Integer = Field(
        default=4,
        ge=2,
        le=64,
        description="Completions sampled per prompt. GRPO compares each with the others of its "
        "prompt, so it needs at least 2; more gives steadier comparisons and costs "
        "proportionally more generation.",
        json_schema_extra=_group("rewards"),
    )
    max_completion_length: Integer = Field(
        default=64,
        ge=1,
        le=8192,
        description="Longest completion, in tokens; a completion cut here has not ended its "
        "turn (`<end_of_turn>`; Gemma 4: `<turn|>`). Generation dominates a step's time on a "
        "CPU: keep it near what a good answer needs.",
        json_schema_extra=_group("rewards"),
    )
    temperature: Number = Field(
        default=1.0,
        gt=0,
        le=2,
        description="Sampling temperature of the completions: lower makes them more alike "
        "(less to compare), higher more varied.",
        json_schema_extra=_group("rewards"),
    )
    top_p: Number = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Nucleus sampling: draw each token from the most likely ones that make up "
        "this share of the probability (1: from all).",
        json_schema_extra=_group("rewards"),
    )
    beta: Number = Field(
        default=0.0,
        ge=0,
        le=10,
        description="Weight of the KL term that keeps the model near where it started (with "
        "LoRA: the adapters switched off, or the continued adapter's starting weights). 0 "
        "(current practice) skips it and its extra forward pass; 0.01-0.1 guards against "
        "drifting far for a reward. Full fine-tuning supports only 0.",
        json_schema_extra=_group("rewards"),
    )
    epsilon: Number = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Clip range of the probability ratio between the model being trained and "
        "the one that wrote the completions (PPO's epsilon): an update stops pushing a token "
        "further once its probability has changed by this fraction.",
        json_schema_extra=_group("rewards"),
    )
    updates_per_generation: Integer = Field(
        default=1,
        ge=1,
        le=8,
        description="Optimizer updates on each batch of completions (PPO's mu). 1 trains on "
        "each batch once, where the probability ratio is 1 and nothing is clipped; more reuses "
        "the costly generations, the clip range (epsilon) keeping the later updates near the "
        "model that wrote them.",
        json_schema_extra=_group("rewards"),
    )
    loss_type: Literal["grpo", "dr_grpo"] = Field(
        default="grpo",
        description="`grpo` averages the loss over each completion's tokens, then over "
        "completions; `dr_grpo` divides the summed token losses by completions x max "
        "completion length, which does not favour short wrong or long right answers.",
        json_schema_extra=_group("rewards"),
    )
    scale_rewards: StrictBool = Field(
        default=True,
        description="Divide each completion's advantage (its reward minus its prompt's mean) "
        "by the standard deviation of its prompt's rewards, so prompts of every difficulty "
        "count alike. Off: raw differences (Dr. GRPO).",
        json_schema_extra=_group("rewards"),
    )
    learning_rate: Number = Field(
        default=5e-5,
        gt=0,
        le=1,
        description="Step size of the AdamW optimizer at its peak. GRPO wants a gentler rate "
        "than supervised fine-tuning: 2e-5 to 1e-4 with LoRA, 1e-6 to 1e-5 for full weights.",
        json_schema_extra=_group("optimisation"),
    )
    batch_size: Integer = Field(
        default=2,
        ge=1,
        le=1024,
        description="Prompts per forward pass; each is answered `num_generations` times, so a "
        "pass trains batch size x generations completions. A step takes batch size x gradient "
        "accumulation prompts.",
        json_schema_extra=_group("optimisation"),
    )
    eval_max_examples: Integer = Field(
        default=16,
        ge=1,
        le=100_000,
        description="Held-out prompts answered (greedily) and graded at each evaluation, the "
        "same ones every time; each costs a completion of up to max completion length tokens.",
        json_schema_extra=_group("evaluation"),
    )

    @model_validator(mode="after")
    def _supported(self) -> GRPOSpec:
        if self.method == "full" and self.beta > 0:
            raise ValueError(
                "beta > 0 with full fine-tuning would need a second copy of the model as the "
                "reference: use LoRA (whose reference is the same weights with the adapters "
                "off), or set beta to 0"
            )
        if self.max_completion_length >= self.max_length:
            raise ValueError(
                f"max_completion_length ({self.max_completion_length}) leaves no room for the "
                f"prompt within max_length ({self.max_length}): raise max_length"
            )
        return self


@dataclass(frozen=True)
class Prompt:
    """A prompt as token ids, the text shown for it, and the row its graders read."""

    ids: list[int]
    text: str
    row: Mapping[str, Any]


def prompt_of(record: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], Mapping[str, Any]]:
    """A record's prompt messages and the row its graders read: a prompt-only record as it is;
    a conversation's messages before its last answer, that answer as the `answer` column."""
    if "prompt" in record:
        return list(record["prompt"]), record
    messages = list(record.get("messages") or [])
    if not messages or messages[-1]["role"] != "assistant":
        raise InvalidInput(
            "GRPO learns from prompts: give it a prompt-only dataset, or conversations that "
            "end with an answer."
        )
    row = {**record, "prompt": messages[:-1], ANSWER_COLUMN: text_of(messages[-1])}
    return messages[:-1], row


def encode_prompts(
    records: Sequence[Mapping[str, Any]], tokenizer: Tokenizer, longest: int
) -> tuple[list[Prompt], int]:
    """The records' prompts of at most `longest` tokens, and how many were longer."""
    from tuneforge.training.components.tokenize import encode_prompt

    prompts, skipped = [], 0
    for record in records:
        messages, row = prompt_of(record)
        try:
            ids = encode_prompt(messages, tokenizer)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        if len(ids) > longest:
            skipped += 1
            continue
        user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        prompts.append(Prompt(ids, text_of(user) if user else "", row))
    return prompts, skipped


def generation_seed(seed: int, step: int, batch: int) -> int:
    """The seed of a step's `batch`-th completions: a function of the run's seed and the step,
    so a resumed run samples what the uninterrupted one would have."""
    return (seed * 1_000_003 + step) * 1_024 + batch


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def reward_metrics(
    scores: Sequence[Scores], generations: int, names: Sequence[str]
) -> dict[str, float]:
    """A step's reward metrics: the mean total and its mean within-group spread, and each
    grader's mean and spread over all the step's completions."""
    totals = [s.total for s in scores]
    groups = [totals[i : i + generations] for i in range(0, len(totals), generations)]
    metrics = {
        "reward": statistics.fmean(totals),
        "reward_std": statistics.fmean(map(_std, groups)),
    }
    for name in names:
        grades = [s.grades[name] for s in scores]
        metrics[f"reward/{name}"] = statistics.fmean(grades)
        metrics[f"reward/{name}/std"] = _std(grades)
    return metrics


class GRPORun:
    """One run's parts: the model, its prompts and graders, and the step and evaluation the
    shared loop calls."""

    def __init__(
        self,
        spec: GRPOSpec,
        model: nn.Module,
        tokenizer: Tokenizer,
        runtime: Runtime,
        graders: GraderSet,
        train: list[Prompt],
        evals: list[Prompt],
    ) -> None:
        from tuneforge.training.components.generation import Sampling

        self.spec, self.model, self.tokenizer, self.runtime = spec, model, tokenizer, runtime
        self.graders, self.train, self.evals = graders, train, evals
        self.names = [grader.name for grader in spec.graders]
        self.sampling = Sampling(spec.max_completion_length, spec.temperature, spec.top_p)
        self.greedy = Sampling(spec.max_completion_length, greedy=True)
        self.loop: Loop | None = None
        self.graded_samples: list[dict[str, Any]] = []

    def _complete(
        self, prompts: Sequence[Prompt], generations: int, sampling: Sampling, seed: int | None
    ) -> tuple[Completions, list[Scores]]:
        from tuneforge.training.components.generation import complete

        batch = complete(
            self.model,
            self.tokenizer,
            [p.ids for p in prompts],
            generations,
            sampling,
            self.runtime,
            seed,
        )
        rows = [p.row for p in prompts for _ in range(generations)]
        return batch, self.graders.score(batch.texts, rows)

    def step(self, micro_batches: list[list[int]]) -> StepWork:
        """Sample and grade the completions of every micro-batch (all written by the model as
        it is before this step's updates), then the loss's backward pass on each, for each of
        the `updates_per_generation` updates (the loop makes the last)."""
        import torch

        from tuneforge.training.components.loop import StepWork
        from tuneforge.training.components.policy import (
            group_advantages,
            policy_loss,
            token_logprobs,
        )
        from tuneforge.training.runtime import reference_of

        assert self.loop is not None
        spec, step = self.spec, self.loop.state.step + 1
        rollouts = [
            self._complete(
                [self.train[i] for i in ids],
                spec.num_generations,
                self.sampling,
                generation_seed(spec.seed, step, index),
            )
            for index, ids in enumerate(micro_batches)
        ]
        completions = sum(len(batch.texts) for batch, _ in rollouts)
        denominator = float(completions)
        if spec.loss_type == "dr_grpo":
            denominator *= spec.max_completion_length
        prepared = []
        for batch, scores in rollouts:
            rewards = torch.tensor([s.total for s in scores], dtype=torch.float32)
            advantages = group_advantages(rewards, spec.num_generations, spec.scale_rewards)
            batch = _to(batch, self.runtime.device)
            reference = None
            if spec.beta > 0:
                with reference_of(self.model), self.runtime.autocast():
                    reference = token_logprobs(self.model, batch)
            prepared.append((batch, advantages.to(batch.completion_mask.device), reference))
        loss, clipped, kl_sum, tokens, seen = 0.0, 0, 0.0, 0, 0
        # The log-probs of the model that wrote the completions: the model as it is at the
        # first update (the ratio is exactly 1 there), kept for the later ones.
        old: list[torch.Tensor] = []
        for update in range(spec.updates_per_generation):
            if update > 0:
                self.loop.update()  # the loop makes the last update of the step
            for index, (batch, advantages, reference) in enumerate(prepared):
                with self.runtime.autocast():
                    logprobs = token_logprobs(self.model, batch)
                if update == 0:
                    old.append(logprobs.detach())
                out = policy_loss(
                    logprobs,
                    old[index],
                    advantages,
                    batch.completion_mask,
                    spec.epsilon,
                    spec.loss_type,
                    denominator,
                    spec.beta,
                    reference,
                )
                self.loop.backward(out.loss)
                loss += float(out.loss.detach()) / spec.updates_per_generation
                clipped, tokens = clipped + out.clipped_tokens, tokens + out.tokens
                kl_sum += out.kl_sum
                seen += int(batch.attention_mask.sum())
        scores = [s for _, batch_scores in rollouts for s in batch_scores]
        metrics = reward_metrics(scores, spec.num_generations, self.names)
        metrics["completion_length"] = tokens / max(completions * spec.updates_per_generation, 1)
        metrics["clip_ratio"] = clipped / max(tokens, 1)
        if spec.beta > 0:
            metrics["kl"] = kl_sum / max(tokens, 1)
        return StepWork(loss=loss, tokens=seen, metrics=metrics)

    def evaluate(self) -> dict[str, float]:
        """Greedy completions of the held-out prompts, graded: `eval_reward` and each grader's
        `eval_reward/<name>`; the first few become the samples."""
        per_batch = self.spec.batch_size * self.spec.num_generations
        scores: list[Scores] = []
        self.graded_samples = []
        for first in range(0, len(self.evals), per_batch):
            prompts = self.evals[first : first + per_batch]
            batch, batch_scores = self._complete(prompts, 1, self.greedy, None)
            scores += batch_scores
            for prompt, text, ended, score in zip(
                prompts, batch.texts, batch.ended, batch_scores, strict=True
            ):
                if len(self.graded_samples) < SAMPLES_FROM_TEST:
                    self.graded_samples.append(_sample(prompt, text, ended, score))
        values = {"eval_reward": statistics.fmean(s.total for s in scores)}
        for name in self.names:
            values[f"eval_reward/{name}"] = statistics.fmean(s.grades[name] for s in scores)
        return values

    def samples(self, prompts: Sequence[Prompt]) -> list[dict[str, Any]]:
        """The spec's sample prompts answered and graded, or the evaluation's first answers."""
        if not prompts:
            return self.graded_samples
        batch, scores = self._complete(prompts, 1, self.greedy, None)
        return [
            _sample(prompt, text, ended, score)
            for prompt, text, ended, score in zip(
                prompts, batch.texts, batch.ended, scores, strict=True
            )
        ]


def _sample(prompt: Prompt, answer: str, ended: bool, score: Scores) -> dict[str, Any]:
    return {
        "prompt": prompt.text,
        "answer": answer,
        "ended": ended,
        "reward": score.total,
        "grades": dict(score.grades),
    }


def _to(batch: Completions, device: str) -> Completions:
    from dataclasses import replace

    if batch.prompt_ids.device.type == device:
        return batch
    return replace(
        batch,
        prompt_ids=batch.prompt_ids.to(device),
        prompt_mask=batch.prompt_mask.to(device),
        completion_ids=batch.completion_ids.to(device),
        completion_mask=batch.completion_mask.to(device),
    )


def train_grpo(
    spec: GRPOSpec,
    model_path: Path,
    train_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    reporter: Reporter,
    workdir: Path,
    checkpoints: Checkpoints | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Outcome:
    started = time.perf_counter()  # importing torch counts as loading
    from tuneforge.data.conversation import message
    from tuneforge.models.tokenizer import model_tokenizer
    from tuneforge.training.components.loop import Loop
    from tuneforge.training.rewards.grade import GraderSet
    from tuneforge.training.runtime import prepare_model, runtime_for

    runtime = runtime_for(spec)
    tokenizer = model_tokenizer(model_path)
    longest = spec.max_length - spec.max_completion_length
    train, skipped = encode_prompts(train_records, tokenizer, longest)
    if not train:
        raise InvalidInput(
            f"No training prompt fits in max length {spec.max_length} minus max completion "
            f"length {spec.max_completion_length}: raise max_length.",
            {"fields": ["max_length", "max_completion_length"]},
        )
    if skipped:
        reporter.log(
            f"{skipped} prompts are longer than {longest} tokens (max length minus max "
            "completion length) and are left out",
            "warning",
        )
    evals, _ = encode_prompts(test_records[: spec.eval_max_examples], tokenizer, longest)
    samples = [
        Prompt(encode_prompt_text(text, tokenizer), text, {"prompt": [message("user", text)]})
        for text in spec.sample_prompts
    ]
    reporter.log(
        f"{len(train)} training and {len(evals)} evaluation prompts, {spec.num_generations} "
        f"completions each; {spec.method} on {runtime.device} in {runtime.precision}"
    )
    model = prepare_model(spec, model_path, runtime, reference=spec.beta > 0)
    with GraderSet(spec.graders, secrets=secrets) as graders:
        run = GRPORun(spec, model, tokenizer, runtime, graders, train, evals)
        loop = Loop(
            spec, model, model_path, runtime, reporter, workdir, checkpoints, len(train), started
        )
        run.loop = loop
        loop.watch = ("eval_reward", "max")  # early stopping: the held-out reward stops rising
        evaluate = run.evaluate if evals else None
        eval_tokens = len(evals) * spec.max_completion_length
        shown = spec.sample_answers and (samples or evals)
        show = (lambda: run.samples(samples)) if shown else None
        return loop.run(run.step, evaluate, eval_tokens, show)


def encode_prompt_text(text: str, tokenizer: Tokenizer) -> list[int]:
    """A sample prompt (one user message) as token ids."""
    from tuneforge.data.conversation import message
    from tuneforge.training.components.tokenize import encode_prompt

    return encode_prompt([message("user", text)], tokenizer)


def _check(spec: GRPOSpec, facts: DatasetFacts) -> list[Finding]:
    """Refuse graders that read a column the dataset does not have."""
    available = set(facts.columns)
    if facts.mode == "conversation":
        available.add(ANSWER_COLUMN)
    findings = []
    for grader in spec.graders:
        missing = sorted(grader.columns() - available)
        if missing:
            have = ", ".join(sorted(available)) or "none"
            findings.append(
                Finding(
                    ("graders",),
                    f"The grader {grader.name!r} reads the column {missing[0]!r}, which this "
                    f"dataset does not have (its columns: {have}).",
                    "refusal",
                )
            )
    return findings


def _judges(spec: GRPOSpec) -> list[JudgeSpec]:
    from tuneforge.training.rewards.spec import Judge

    return [grader.judge_spec() for grader in spec.graders if isinstance(grader, Judge)]


def _batching(spec: GRPOSpec) -> Batching:
    generations = spec.num_generations
    return Batching(
        packed=False,
        answers_only=True,
        sequences=generations,
        reference_passes=generations if spec.beta > 0 else 0,
        generated_tokens=generations * spec.max_completion_length,
    )


RECIPE = Recipe(
    trainer="grpo",
    title="Reinforcement learning from graders (GRPO)",
    description="Learns from rewards instead of answers: the model answers each prompt several "
    "times, graders score the answers (format, a number, valid JSON, a judge...), and it learns "
    "to write more like the answers that scored best.",
    spec=GRPOSpec,
    train=train_grpo,
    batching=_batching,
    data=("prompt_only", "conversation"),
    check=_check,
    judges=_judges,
    presets="{model}_{method}_grpo",
)
