"""An evaluation from a split's rows to its results, in the worker process (no database here).

The samples are drawn (`select_samples`); each model answers every sample's prompt (rendered in
its chat format with the row's tools), greedy by default, an answer that calls tools stopping
where the model would wait for their results, and the suite scores the answers against the
references. Both models run on the same engine with the same numerics, so a difference in the
results is the models' own: a fine-tune and its base load the base once, with the adapter
attached (`ModelCache`). The engine is llama.cpp when it serves every model of the evaluation
(a LoRA fine-tune through its checked fast path, its base through the same GGUF; one answer
after another), transformers otherwise (prompts decoded in batches). The perplexity and
preference suites generate nothing: they score the dataset's own answers with transformers. The
rewards suite's graders may call judges, with the owner's `secrets`.
"""

from __future__ import annotations

import functools
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuneforge.data.images import thumbnail
from tuneforge.errors import InvalidInput
from tuneforge.evaluation import embedding
from tuneforge.evaluation.metrics.contract import SuiteResult
from tuneforge.evaluation.metrics.json_output import json_output
from tuneforge.evaluation.metrics.overlap import conversation
from tuneforge.evaluation.metrics.suites import SUITES
from tuneforge.evaluation.metrics.tool_calls import ToolReference, tool_calls
from tuneforge.evaluation.perplexity import perplexity
from tuneforge.evaluation.preference import preference
from tuneforge.evaluation.report import LABELS, difference
from tuneforge.evaluation.rewards import rewards
from tuneforge.evaluation.samples import TEXT_ONLY, Sample, select_samples, shown_text
from tuneforge.evaluation.sight import refuse_text_only
from tuneforge.evaluation.spec import NO_ANSWERS, EvaluationSpec
from tuneforge.inference import loaders
from tuneforge.inference.cache import ModelCache
from tuneforge.inference.engine import Answer, Engine, ManyAtOnce
from tuneforge.inference.fast_path import Verdict
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.inference.params import GenerationParams, ModelRef
from tuneforge.models.catalog import Catalog, load_catalog
from tuneforge.models.chat_template import GEMMA_3, ChatFormat, format_of
from tuneforge.settings import Settings
from tuneforge.training.rewards.grade import GraderSet

ENGINE = "transformers"  # serves every model and fine-tune, and gives perplexity its logits
FAST = "llama.cpp"
NEEDS = {
    "perplexity": "an answer (or a plain text) to score",
    "vibe": "a user prompt",
    "rewards": "a user prompt",
    "preference": "a prompt with a chosen and a rejected answer",
    "tool_calls": "a conversation with tools (a `tools` column) and an assistant answer",
}

OnSample = Callable[[str, int, int], None]
"""Called with a model's label, the number of samples and how many it has done: before its
first sample (0) and after each one (answers complete in batches, not in the samples' order).
It may raise to stop the evaluation (a cancelled job)."""


@dataclass(frozen=True)
class Outcome:
    """The results: per model (in `LABELS` order) its `metrics` and `details`; the difference
    B - A of each metric both have (None for one model); one row per sample (see `report`);
    how many rows of the split could not be used; the engine that answered, and why a
    fine-tune's llama.cpp fast path was not used (None: it was, or there is none)."""

    metrics: list[dict[str, float]]
    details: list[dict[str, Any]]
    difference: dict[str, float] | None
    rows: list[dict[str, Any]]
    skipped: int
    engine: str = ENGINE
    engine_note: str | None = None


def answers_of(
    engine: Engine,
    adapter: str | None,
    samples: Sequence[Sample],
    params: GenerationParams,
    cancelled: threading.Event,
    progress: Callable[[int], None],
    chat: ChatFormat = GEMMA_3,
) -> list[str]:
    """The model's answers to the samples' prompts (with their images), rendered in the model's
    chat format `chat` (`prompt_text`), each sample with its own seed and stop strings
    (`sample_params`), decoded together (`generate_many`: an evaluation answers on transformers
    or llama.cpp); `progress(done)` after each answer completes."""
    assert isinstance(engine, ManyAtOnce), f"{engine.name} does not answer many prompts at once"
    texts = [prompt_text(sample, chat) for sample in samples]
    done = 0

    def answered(index: int, reply: Answer) -> None:
        nonlocal done
        done += 1
        progress(done)

    replies = engine.generate_many(
        texts,
        [sample_params(params, sample, chat) for sample in samples],
        cancelled,
        adapter,
        [sample.images for sample in samples],
        answered,
    )
    return [reply.text.strip() for reply in replies]


def prompt_text(sample: Sample, chat: ChatFormat = GEMMA_3) -> str:
    """What the model continues: the sample's prompt in the chat format `chat`, declaring the
    row's tools, and asking for the answer."""
    return chat.render(sample.prompt, tools=sample.tools, add_generation_prompt=True)


def sample_params(
    params: GenerationParams, sample: Sample, chat: ChatFormat = GEMMA_3
) -> GenerationParams:
    """The generation settings of one sample. With tools, the answer also stops at the format's
    response marker, where a model that called tools waits for their results (as the inference
    server stops). Sampling (temperature > 0) draws with a seed of its own, made of the
    evaluation's seed and the row's index, so the answers are reproducible and each sample's
    draws are independent of the others' (one seed for every sample would make every answer
    follow the same random numbers)."""
    update: dict[str, Any] = {}
    if sample.tools:
        update["stop"] = [*params.stop, chat.tool_markers.response[0]]
    if not params.greedy and params.seed is not None:
        update["seed"] = zlib.crc32(f"{params.seed}:{sample.index}".encode())
    return params.model_copy(update=update) if update else params


def score(
    spec: EvaluationSpec,
    answers: Sequence[str],
    samples: Sequence[Sample],
    secrets: Mapping[str, str] | None = None,
    chat: ChatFormat = GEMMA_3,
) -> SuiteResult:
    """The suite's scores of `answers` against the samples' references (the rewards suite's
    graders: against the samples' rows, calling judges with the keys in `secrets`; the
    tool_calls suite: the calls in the answers, written in `chat`'s notation, against the
    references' calls and the rows' tools)."""
    if spec.suite == "tool_calls":
        expected = [ToolReference(sample.calls, sample.tools or ()) for sample in samples]
        return tool_calls(answers, expected, chat.tool_markers)
    if spec.suite == "rewards":
        assert spec.graders is not None  # the spec requires them for this suite
        with GraderSet(spec.graders, secrets=secrets) as graders:
            return rewards(graders, answers, samples)
    references = [sample.reference or "" for sample in samples]
    if spec.suite == "json":
        return json_output(answers, references, schema=spec.json_schema)
    if spec.suite == "conversation" and (embed := embedding.load_embedder()) is not None:
        result = conversation(answers, references, embed)
        return replace(result, details={"embedding_model": embedding.MODEL_NAME})
    return SUITES[spec.suite](answers, references)


def _row(
    number: int,
    sample: Sample,
    answers: Mapping[str, list[str]],
    results: Mapping[str, SuiteResult],
) -> dict[str, Any]:
    return {
        "index": sample.index,
        "prompt": sample.question,
        "messages": [{"role": m["role"], "text": shown_text(m)} for m in sample.prompt],
        "images": [thumbnail(image) for image in sample.images],
        "reference": sample.reference,
        "answers": {label: values[number] for label, values in answers.items()},
        "scores": {label: result.per_sample[number] for label, result in results.items()},
    }


def run_evaluation(
    spec: EvaluationSpec,
    refs: Sequence[ModelRef],
    records: Sequence[Mapping[str, Any]],
    settings: Settings,
    on_sample: OnSample,
    cancelled: threading.Event,
    secrets: Mapping[str, str] | None = None,
    names: Sequence[str] | None = None,
) -> Outcome:
    """Evaluate the models `refs` (A, then B) on `records`, the rows of the spec's split.

    `cancelled` stops the answers being generated (between two decoding steps); `on_sample`
    hears each sample done and is where to stop (it may raise);
    `secrets` holds the keys of the rewards suite's judge graders; `names` are the models' names
    for messages (their catalog ids by default). Samples that show images are answered with
    them: every model must be a vision model then (`InvalidInput` naming the one that is not).
    """
    samples, skipped = select_samples(
        records, spec.suite, max_samples=spec.max_samples, seed=spec.seed
    )
    if not samples:
        needs = NEEDS.get(spec.suite, "a user prompt and a reference answer")
        left_out = " (rows with images are left out)" if spec.suite in TEXT_ONLY else ""
        raise InvalidInput(
            f"None of the {len(records)} rows of the {spec.split} split can be used by the "
            f"{spec.suite} suite: it needs {needs}{left_out}."
        )
    catalog = load_catalog(settings.catalog_file)
    if any(sample.images for sample in samples):
        refuse_text_only(names or [ref.base for ref in refs], [catalog.get(r.base) for r in refs])
    params = GenerationParams(
        temperature=spec.temperature, max_new_tokens=spec.max_new_tokens, seed=spec.seed
    )
    engine, note = ENGINE, None
    if spec.suite not in NO_ANSWERS and not any(sample.images for sample in samples):
        engine, note = answering_engine(refs, catalog, settings)
    cache = ModelCache(
        settings.inference_budget_bytes,
        lambda ref: engine,
        lambda name, ref, report: loaders.load(name, ref, settings, report, batch=True),
        lambda engine, ref: loaders.attach(engine, ref, settings),
    )
    labels = LABELS[: len(refs)]
    answers: dict[str, list[str]] = {}
    results: dict[str, SuiteResult] = {}
    total = len(samples)
    for label, ref in zip(labels, refs, strict=True):
        progress = functools.partial(on_sample, label, total)
        progress(0)
        loaded = cache.get(ref)
        if spec.suite in NO_ANSWERS:
            entry = catalog.get(ref.base)
            assert isinstance(loaded.engine, TransformersEngine) and entry is not None
            if spec.suite == "perplexity":
                results[label] = perplexity(
                    loaded.engine, loaded.adapter, samples, entry.context_length, progress
                )
            else:
                results[label] = preference(
                    loaded.engine,
                    loaded.adapter,
                    samples,
                    entry.context_length,
                    spec.length_normalized,
                    progress,
                )
            continue
        chat = format_of(catalog.get(ref.base))  # a fine-tune speaks its base's format
        answers[label] = answers_of(
            loaded.engine, loaded.adapter, samples, params, cancelled, progress, chat
        )
        if spec.suite != "vibe":
            results[label] = score(spec, answers[label], samples, secrets, chat)
    metrics = [results[label].metrics if label in results else {} for label in labels]
    return Outcome(
        metrics=metrics,
        details=[results[label].details if label in results else {} for label in labels],
        difference=difference(metrics),
        rows=[_row(number, sample, answers, results) for number, sample in enumerate(samples)],
        skipped=skipped,
        engine=engine,
        engine_note=note,
    )


def answering_engine(
    refs: Sequence[ModelRef], catalog: Catalog, settings: Settings
) -> tuple[str, str | None]:
    """The engine that answers for every model of an evaluation, and why it is not llama.cpp
    when a fine-tune's fast path is off. llama.cpp only when it serves them all: a LoRA
    fine-tune through its fast path (made and checked here the first time), a base of one of
    them through the same GGUF, any other model as the inference server would serve it."""
    notes = [loaders.prepare(ref, settings) for ref in refs]
    note = next((n for n in notes if n is not None), None)
    verdicts = [loaders.verdict(ref, settings) for ref in refs]
    fast_bases = {
        ref.base
        for ref, found in zip(refs, verdicts, strict=True)
        if ref.kind == "adapter" and found is not None and found.ok
    }

    def fast(ref: ModelRef, found: Verdict | None) -> bool:
        entry = catalog.get(ref.base)
        if entry is None or ref.engine not in ("auto", FAST):
            return False
        if ref.kind == "base" and ref.base in fast_bases:
            return True
        return loaders.choose(ref, entry, found) == FAST

    if all(fast(ref, found) for ref, found in zip(refs, verdicts, strict=True)):
        return FAST, None
    return ENGINE, note
