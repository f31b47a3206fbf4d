"""Augmentation: preview it on a processed dataset's first train rows, then make the augmented
dataset in a `dataset_augment` job. Always as the owner; a foreign dataset is not found.

An LLM method's generator is checked at launch and at preview as the job checks it: the
endpoint policy (may this user make the server call that address), its key secret set, a
local model the user's to use. The preview asks an endpoint for real, once per request (no
retries: someone is waiting), with the key from the user's secrets; a local model is loaded
only by the job (never in the web process), so its preview shows the counts and estimates
without variants."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.data import parquet
from tuneforge.data.augment.llm import Planner, Rewriter, close_all, key_secrets, open_generators
from tuneforge.data.augment.measure import row_tokens
from tuneforge.data.augment.records import (
    METHODS,
    Planned,
    finish_variants,
    needs_wordnet,
    plan_variants,
)
from tuneforge.data.augment.spec import IMAGE_METHODS, AugmentSpec
from tuneforge.data.augment.stored import TRAIN
from tuneforge.data.augment.synonyms import check_wordnet
from tuneforge.data.images import ImageRejected, thumbnail
from tuneforge.data.stored import dataset_prefix
from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import Dataset, User
from tuneforge.errors import Conflict, InvalidInput
from tuneforge.jobs.endpoints import check_generator
from tuneforge.jobs.kinds.dataset import DatasetJobSpec
from tuneforge.jobs.lifecycle import create_job
from tuneforge.schemas.augmentation import (
    AugmentCost,
    AugmentPreview,
    LLMUsage,
    OriginalShown,
    VariantShown,
)
from tuneforge.services.datasets import get_dataset, rendered_example
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

PREVIEW_ROWS = 5
MAX_PREVIEW_ROWS = 20
#: Seconds a job spends beyond the rows themselves (start, tokenizer, writing).
JOB_OVERHEAD_SECONDS = 5.0
#: Tokens a local model writes per second on a CPU (transformers, fp32: docs/design), for the
#: estimate of a job that generates with one.
LOCAL_TOKENS_PER_SECOND = 6.0


def _source(session: Session, user: User, dataset_id: str) -> Dataset:
    dataset = get_dataset(session, user, dataset_id)
    if dataset.kind != "processed":
        raise Conflict("Augmentation works on processed datasets; process this raw one first.")
    if dataset.status != "ready":
        raise Conflict(f"This dataset is {dataset.status}; augment it once it is ready.")
    if TRAIN not in dataset.splits:
        raise Conflict("This dataset has no train split to augment.")
    return dataset


def check_generators(session: Session, settings: Settings, user: User, spec: AugmentSpec) -> None:
    """Refuse an LLM method's generator `user` may not use (see the module)."""
    for method in spec.llm_methods():
        check_generator(method.generator, user, settings, session)


def check_spec(dataset: Dataset, spec: AugmentSpec) -> None:
    """Refuse, saying what to change, an augmentation that cannot change any row."""
    names = spec.method_names()
    text = [n for n in names if n not in IMAGE_METHODS]
    has_images = any(column["name"] == "images" for column in dataset.columns)
    mode = ((dataset.config or {}).get("mapping") or {}).get("mode")
    if not has_images and not text:
        raise InvalidInput(
            f"This dataset has no images for {', '.join(names)}; choose a text method "
            "(synonym, insert, swap, delete)."
        )
    if text and mode == "language_modeling" and spec.rewrite == "prompts" and not has_images:
        raise InvalidInput(
            "This dataset holds plain text, which has no prompts: choose rewrite `answers` "
            "(or `both`) to change its text."
        )
    if needs_wordnet(spec):
        check_wordnet()


def _thumbnails(record: dict[str, Any]) -> list[str]:
    shown = []
    for data in record.get("images") or ():
        try:
            shown.append(thumbnail(data))
        except ImageRejected:
            continue
    return shown


def _made(
    session: Session,
    settings: Settings,
    user: User,
    spec: AugmentSpec,
    rows: list[dict[str, Any]],
) -> tuple[list[list[dict[str, Any]]], list[Planned], Planner, Rewriter | None]:
    """The variants of the previewed rows (none for a local model's), the planned requests,
    and the rewriter that asked an endpoint for them."""
    planner = Planner()
    planned: list[Planned] = [plan_variants(r, i, spec, planner) for i, r in enumerate(rows)]
    llm = spec.llm_methods()
    if any(m.generator.kind == "local" for m in llm):
        return [[] for _ in rows], planned, planner, None
    rewriter = None
    if planner.rewrites:
        keys = secret_values(session, settings, user.id, key_secrets(llm))
        generators = open_generators(llm, keys, settings, delays=())
        try:
            rewriter = Rewriter(generators)
            rewriter.run(planner.rewrites)
        finally:
            close_all(generators)
    made = [finish_variants(p, spec, rewriter, planner) for p in planned]
    return made, planned, planner, rewriter


def _usage(
    spec: AugmentSpec,
    planner: Planner,
    rewriter: Rewriter | None,
    tokenizer: Any,
    scale: float,
    price: float,
) -> LLMUsage | None:
    """The LLM requests the job would make and their tokens, from the previewed rows' requests
    scaled to the split (`scale`: train rows per previewed row)."""
    from tuneforge.models.tokenizer import count_tokens

    if not spec.llm_methods():
        return None
    steps = [(r.text, step) for r in planner.rewrites for step in r.steps]
    if rewriter is not None and rewriter.succeeded and rewriter.prompt_tokens:
        prompt, completion = rewriter.prompt_tokens, rewriter.completion_tokens
        per = max(rewriter.answered, 1)  # a failed request has no usage
        prompt, completion = round(prompt / per * len(steps)), round(completion / per * len(steps))
        how = "as the endpoint counted the preview's requests"
    else:
        prompts = count_tokens(
            [step.messages(text)[0]["content"] for text, step in steps], tokenizer
        )
        answers = count_tokens([text for text, _ in steps], tokenizer)
        prompt, completion = sum(prompts), sum(answers)
        how = (
            "counted with Gemma's tokenizer: each request's prompt, and a reply as long as "
            "the text it rewrites"
        )
    local = all(m.generator.kind == "local" for m in spec.llm_methods())
    requests = round(len(steps) * scale)
    tokens = round((prompt + completion) * scale)
    return LLMUsage(
        requests=requests,
        prompt_tokens=round(prompt * scale),
        completion_tokens=round(completion * scale),
        price_per_1k_tokens=0.0 if local else price,
        money=0.0 if local else round(tokens / 1000 * price, 4),
        note=f"{requests:,} requests of about {tokens / max(requests, 1):,.0f} tokens each "
        f"({how}), the previewed rows' mean scaled to the train split"
        + (", on a local model: no charge." if local else f", at {price:g} per 1k tokens."),
    )


def preview_augmentation(
    session: Session,
    store: ArtifactStore,
    settings: Settings,
    user: User,
    dataset_id: str,
    spec: AugmentSpec,
    count: int = PREVIEW_ROWS,
    price_per_1k_tokens: float = 0.0,
) -> AugmentPreview:
    """The first `count` train rows beside their variants (made as the job will make them),
    with the rows, tokens and time the job would take, and with an LLM method its requests,
    their tokens and their cost at `price_per_1k_tokens`."""
    from tuneforge.models.tokenizer import gemma_tokenizer

    if not 1 <= count <= MAX_PREVIEW_ROWS:
        raise InvalidInput(f"A preview shows 1 to {MAX_PREVIEW_ROWS} rows.")
    if not 0 <= price_per_1k_tokens <= 1000:
        raise InvalidInput("The price per 1k tokens is between 0 and 1000.")
    dataset = _source(session, user, dataset_id)
    check_spec(dataset, spec)
    check_generators(session, settings, user, spec)
    key = parquet.split_key(dataset_prefix(dataset.owner_id, dataset.id), "processed", TRAIN)
    rows: list[dict[str, Any]] = parquet.head(store, key, count).to_pylist()
    began = time.perf_counter()
    made, planned, planner, rewriter = _made(session, settings, user, spec, rows)
    seconds = time.perf_counter() - began
    tokenizer = gemma_tokenizer(settings.models_dir)
    clean = [{k: v for k, v in r.items() if k not in ("augmented_from", METHODS)} for r in rows]
    tokens = row_tokens(clean, tokenizer)
    variant_tokens = [row_tokens(v, tokenizer) if v else [] for v in made]
    examples = [
        OriginalShown(
            row=index,
            rendered=rendered_example(row),
            images=_thumbnails(row),
            tokens=tokens[index],
            variants=[
                VariantShown(
                    methods=variant[METHODS],
                    rendered=rendered_example(variant),
                    images=_thumbnails(variant),
                    tokens=length,
                )
                for variant, length in zip(variants, variant_tokens[index], strict=True)
            ],
        )
        for index, (row, variants) in enumerate(zip(rows, made, strict=True))
    ]
    rows_in = dataset.splits[TRAIN]
    shown = max(len(rows), 1)
    llm = _usage(spec, planner, rewriter, tokenizer, rows_in / shown, price_per_1k_tokens)
    problems: list[str] = []
    if llm is not None and rewriter is None and planner.rewrites:
        problems.append(
            "A local model is loaded only by the job, not by this web server: the preview "
            "shows no variants, and the rows and tokens out are the most the job can make."
        )
    if rewriter is not None and rewriter.reasons:
        problems += [f"{n} request(s): {reason}" for reason, n in rewriter.reasons.most_common(3)]
    per_row = sum(map(len, made)) / shown
    mean_in = sum(tokens) / shown
    mean_variant = sum(map(sum, variant_tokens)) / max(sum(map(len, made)), 1)
    if llm is not None and rewriter is None:  # nothing made: every planned variant counted
        per_row, mean_variant = sum(len(p.variants) for p in planned) / shown, mean_in
    job_seconds = JOB_OVERHEAD_SECONDS + seconds / shown * rows_in * 1.5
    note = (
        f"the preview's {seconds / shown * 1000:.1f} ms per row (x1.5 for counting tokens "
        f"and writing) times {rows_in:,} rows, plus {JOB_OVERHEAD_SECONDS:g} s to start."
    )
    if llm is not None and rewriter is None:
        job_seconds = JOB_OVERHEAD_SECONDS + llm.completion_tokens / LOCAL_TOKENS_PER_SECOND
        note = (
            f"the local model writing {llm.completion_tokens:,} tokens at about "
            f"{LOCAL_TOKENS_PER_SECOND:g} tokens/s on a CPU, plus {JOB_OVERHEAD_SECONDS:g} s."
        )
    money = llm.money if llm is not None else 0.0
    return AugmentPreview(
        examples=examples,
        rows_in=rows_in,
        rows_out=rows_in + round(per_row * rows_in),
        rows_out_max=rows_in * (1 + spec.copies),
        copied_splits={name: n for name, n in dataset.splits.items() if name != TRAIN},
        tokens_in=round(mean_in * rows_in),
        tokens_out=round(mean_in * rows_in + mean_variant * per_row * rows_in),
        llm=llm,
        problems=problems,
        cost=AugmentCost(
            money=money,
            seconds=round(job_seconds, 1),
            note=(
                llm.note + " Time: "
                if llm is not None
                else "Offline methods run on this server's CPU at no charge; the time is "
            )
            + note,
        ),
    )


def augment_dataset(
    session: Session, settings: Settings, user: User, dataset_id: str, spec: AugmentSpec
) -> Dataset:
    """Start making the augmented dataset (in a `dataset_augment` job): `processing` until the
    job ends."""
    source = _source(session, user, dataset_id)
    check_spec(source, spec)
    check_generators(session, settings, user, spec)
    config = dict(source.config or {})
    config["augmentation"] = {
        "source_id": source.id,
        "spec": spec.model_dump(mode="json"),
    }
    target = Dataset(
        owner_id=source.owner_id,
        name=(spec.name or f"{source.name} (augmented)")[:200],
        kind="processed",
        source_id=source.id,
        origin="augmentation",
        origin_ref=source.name,
        format=source.format,
        status="processing",
        config=config,
        mapping=source.mapping,
    )
    session.add(target)
    session.flush()
    create_job(session, user, settings, "dataset_augment", DatasetJobSpec(dataset_id=target.id))
    return target
