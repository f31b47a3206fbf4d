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
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import InvalidInput
from tuneforge.models.chat_template import START_OF_TURN
from tuneforge.training.health import NO_CHAT_TEMPLATE
from tuneforge.training.recipe import Batching, Checkpoints, Outcome, Recipe
from tuneforge.training.spec import SFTSpec

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tuneforge.training.components.packing import Batch
    from tuneforge.training.components.tokenize import Example
    from tuneforge.training.reporting import Reporter


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
    secrets: Mapping[str, str] | None = None,
) -> Outcome:
    del secrets  # SFT calls no judge
    loading = time.perf_counter()  # importing torch counts as loading
    from tokenizers import Tokenizer

    from tuneforge.training.components.loop import Loop, StepWork
    from tuneforge.training.components.loss import causal_lm_loss
    from tuneforge.training.evaluation import evaluate, sample_prompts
    from tuneforge.training.runtime import prepare_model, runtime_for

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
    reporter.log(
        f"{len(train)} training and {len(evals)} evaluation examples; {spec.method} on "
        f"{runtime.device} in {runtime.precision}" + (" with Unsloth" if runtime.unsloth else "")
    )
    model = prepare_model(spec, model_path, runtime)
    loop = Loop(
        spec, model, model_path, runtime, reporter, workdir, checkpoints, len(train), loading
    )

    def forward_backward(batch: Batch, denominator: int) -> float:
        """One pass of `batch`, its gradient added (scaled to a mean over the step's tokens)."""
        with runtime.autocast():
            out = causal_lm_loss(model, batch)
        loop.backward(out.loss_sum / denominator)
        return float(out.loss_sum.detach())

    def step(micro_batches: list[list[int]]) -> StepWork:
        batches = [
            batch
            for ids in micro_batches
            for batch in runtime.forwards([train[i] for i in ids], spec.packing)
        ]
        loss_tokens = max(sum(b.loss_tokens for b in batches), 1)
        loss_sum = sum(
            runtime.each(batches, functools.partial(forward_backward, denominator=loss_tokens))
        )
        return StepWork(loss=loss_sum / loss_tokens, tokens=sum(b.tokens for b in batches))

    def evaluation() -> dict[str, float]:
        return evaluate(model, evals, spec.batch_size, spec.packing, runtime)

    return loop.run(
        step,
        evaluation if evals else None,
        eval_tokens=sum(len(e.input_ids) for e in evals),
        samples=loop.sampler(tokenizer, sample_prompts(spec.sample_prompts, test_records)),
    )


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
