"""Supervised fine-tuning: setup, train, save; and the recipe that registers it as `sft`.

A loop of our own rather than TRL's `SFTTrainer`, because on CPUs it is several times faster for
the same result (`bench/train_throughput.py` measures both in one run): the frozen base stays in
bf16 with the trained weights in fp32 under autocast, examples are packed without padding (each
attends only to itself), and the output head runs only where the loss is taken. The data order
and learning rate are functions of the step, so a run resumed from a checkpoint continues exactly
where it stopped. The caller (a job worker, or `tuneforge train`) provides the records, a
`Reporter`, a local working directory and where checkpoints go.

A vision model (Gemma 3 4B and up, Gemma 4) trains on records with images: each image becomes
its soft tokens in the ids (without loss), the batches carry its pixels or, while the image side is
frozen (the default), its features computed once (`components/vision.py`), and the sample
answers are to held-out images. Examples whose images would be cut by `max_length` are left out
and counted in the run's log.

Importing this module costs no torch (the registry imports it to list the trainers): the loop
imports torch and the components when it runs.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import InvalidInput
from tuneforge.models.chat_template import format_of_tokenizer
from tuneforge.models.vision import VisionInfo, vision_info
from tuneforge.training.health import NO_CHAT_TEMPLATE
from tuneforge.training.recipe import Batching, Checkpoints, Outcome, Recipe
from tuneforge.training.spec import SFTSpec

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from tuneforge.training.components.packing import Batch
    from tuneforge.training.components.tokenize import Example
    from tuneforge.training.reporting import Reporter


#: The `model_type`s of the vision models whose images this recipe encodes.
VISION_MODEL_TYPES = frozenset({"gemma3", "gemma4", "gemma4_unified"})


def model_type(model_dir: Path) -> str:
    """The `model_type` in a model directory's config."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return str(config.get("model_type", ""))


def encode_all(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Tokenizer,
    spec: SFTSpec,
    vision: VisionInfo | None = None,
    reporter: Reporter | None = None,
    split: str = "train",
) -> list[Example]:
    """The records as examples (`vision`: a vision model's); those left with nothing
    to learn are skipped, and those whose images `max_length` would cut are left out with a
    warning to `reporter` saying how many."""
    from tuneforge.training.components.tokenize import ImageDoesNotFit, encode_records

    examples = []
    cut = 0
    encoded = encode_records(records, tokenizer, spec.max_length, spec.assistant_only_loss, vision)
    for number, (record, example) in enumerate(zip(records, encoded, strict=True), start=1):
        if isinstance(example, ImageDoesNotFit):
            cut += 1
            continue
        if isinstance(example, ValueError):  # a record this model cannot train on
            fields = ["base_model", "dataset_id"] if record.get("images") else ["dataset_id"]
            raise InvalidInput(
                f"{split.capitalize()} example {number}: {example}", {"fields": fields}
            ) from example
        if example is not None:
            examples.append(example)
    if cut and reporter is not None:
        assert vision is not None  # only images are cut through
        most = vision.tokens_per_image
        each = f"up to {most}" if vision.variable else str(most)
        reporter.log(
            f"{cut} of {len(records)} {split} examples left out: max length {spec.max_length} "
            f"would cut through their images (each is {each} tokens and 4 around "
            "it); raise max length to keep them.",
            "warning",
        )
    return examples


def chat_template_warning(example: Example, tokenizer: Tokenizer) -> str | None:
    """A warning when an encoded example lacks Gemma's turn markers: the model would not learn
    the turns it is asked in, nor where an answer ends."""
    start = format_of_tokenizer(tokenizer).start_of_turn
    marker = tokenizer.token_to_id(start)
    if marker is not None and marker in example.input_ids:
        return None
    return (
        f"{NO_CHAT_TEMPLATE}: the first example has no {start} (it is trained as plain "
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
    from tuneforge.models.tokenizer import model_tokenizer
    from tuneforge.training.components.loop import Loop, StepWork
    from tuneforge.training.components.loss import causal_lm_loss
    from tuneforge.training.evaluation import evaluate, sample_prompts
    from tuneforge.training.parallel.sharding import shard
    from tuneforge.training.runtime import base_path, prepare_model, runtime_for

    runtime = runtime_for(spec)
    tokenizer = model_tokenizer(model_path)
    vision = vision_info(base_path(model_path))
    if vision is not None and model_type(base_path(model_path)) not in VISION_MODEL_TYPES:
        if any(record.get("images") for record in (*train_records, *test_records)):
            raise InvalidInput(
                "Training on images supports Gemma 3's and Gemma 4's vision models so far; this "
                f"model is a {model_type(base_path(model_path))!r}.",
                {"fields": ["base_model"]},
            )
        vision = None  # text only: its language model learns, as a text model's would
    train = encode_all(train_records, tokenizer, spec, vision, reporter)
    if not train:
        raise InvalidInput(
            "No training example has tokens to learn from: check that the answers are not empty "
            "and that max length leaves room for them"
            + (" and their images." if vision is not None else "."),
            {"fields": ["max_length"]},
        )
    warning = chat_template_warning(train[0], tokenizer)
    if warning:
        reporter.log(warning, "warning")
    evals = encode_all(
        test_records[: spec.eval_max_examples], tokenizer, spec, vision, reporter, "test"
    )
    reporter.log(
        f"{len(train)} training and {len(evals)} evaluation examples; {spec.method} on "
        f"{runtime.device} in {runtime.precision}" + (" with Unsloth" if runtime.unsloth else "")
    )
    model = shard(spec, prepare_model(spec, model_path, runtime), runtime.device)
    images = None
    if vision is not None:
        from tuneforge.training.components.vision import ImageInputs

        frozen = not spec.train_vision
        images = ImageInputs(model, base_path(model_path), vision, frozen)
        reporter.log(
            "Vision model: the language model learns from the images; "
            + (
                f"so does the {' and the '.join(spec.train_vision)}."
                if spec.train_vision
                else "the image encoder and projector stay frozen (train_vision adds them)."
            )
        )
    loop = Loop(
        spec, model, model_path, runtime, reporter, workdir, checkpoints, len(train), loading
    )

    def forward_backward(batch: Batch, denominator: int, weight: float = 1.0) -> float:
        """One pass of `batch`, its gradient added (scaled to a mean over the step's tokens;
        `weight` 0: a pass that only keeps a sharded model's ranks in step)."""
        with runtime.autocast():
            if images is not None:
                batch = images.attach(batch)
            out = causal_lm_loss(model, batch)
        loop.backward(out.loss_sum * weight / denominator)
        return float(out.loss_sum.detach()) * weight

    def step(micro_batches: list[list[int]]) -> StepWork:
        batches = [
            batch
            for ids in micro_batches
            if ids  # a rank's share of an epoch's last micro-batch may be empty
            for batch in runtime.forwards([train[i] for i in ids], spec.packing)
        ]
        # A sharded model's passes gather weights from every rank: each rank runs as many as
        # the busiest one, the extra ones (of its first example) weighing nothing.
        idle = loop.idle_passes(len(batches))
        idle_batches = runtime.forwards([train[0]], spec.packing)[:1] * idle if idle else []
        if images is not None:
            with runtime.autocast():
                warmed = [*batches, *idle_batches[:1]]
                images.warm([i for b in warmed for i in b.images], runtime.device)
        # The mean is over the step's tokens on every rank (`total`: the sum over the ranks).
        loss_tokens = max(round(loop.total(sum(b.loss_tokens for b in batches))), 1)
        loss_sum = sum(
            runtime.each(batches, functools.partial(forward_backward, denominator=loss_tokens))
        ) + sum(forward_backward(batch, loss_tokens, weight=0.0) for batch in idle_batches)
        tokens = round(loop.total(sum(b.tokens for b in batches)))
        return StepWork(loss=loop.total(loss_sum) / loss_tokens, tokens=tokens)

    def evaluation() -> dict[str, float]:
        return evaluate(model, evals, spec.batch_size, spec.packing, runtime, images)

    prompts = sample_prompts(spec.sample_prompts, test_records, vision is not None)
    return loop.run(
        step,
        evaluation if evals else None,
        eval_tokens=sum(len(e.input_ids) for e in evals),
        samples=loop.sampler(tokenizer, prompts, images),
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
    distributed=True,
)
