"""Augmentation: preview it on a processed dataset's first train rows, then make the augmented
dataset in a `dataset_augment` job. Always as the owner; a foreign dataset is not found."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from tuneforge.data import parquet
from tuneforge.data.augment.measure import row_tokens
from tuneforge.data.augment.records import METHODS, needs_wordnet, variants_of
from tuneforge.data.augment.spec import IMAGE_METHODS, AugmentSpec
from tuneforge.data.augment.stored import TRAIN
from tuneforge.data.augment.synonyms import check_wordnet
from tuneforge.data.images import ImageRejected, thumbnail
from tuneforge.data.stored import dataset_prefix
from tuneforge.db.tables import Dataset, User
from tuneforge.errors import Conflict, InvalidInput
from tuneforge.jobs.kinds.dataset import DatasetJobSpec
from tuneforge.jobs.lifecycle import create_job
from tuneforge.schemas.augmentation import AugmentCost, AugmentPreview, OriginalShown, VariantShown
from tuneforge.services.datasets import get_dataset, rendered_example
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

PREVIEW_ROWS = 5
MAX_PREVIEW_ROWS = 20
#: Seconds a job spends beyond the rows themselves (start, tokenizer, writing).
JOB_OVERHEAD_SECONDS = 5.0


def _source(session: Session, user: User, dataset_id: str) -> Dataset:
    dataset = get_dataset(session, user, dataset_id)
    if dataset.kind != "processed":
        raise Conflict("Augmentation works on processed datasets; process this raw one first.")
    if dataset.status != "ready":
        raise Conflict(f"This dataset is {dataset.status}; augment it once it is ready.")
    if TRAIN not in dataset.splits:
        raise Conflict("This dataset has no train split to augment.")
    return dataset


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


def preview_augmentation(
    session: Session,
    store: ArtifactStore,
    settings: Settings,
    user: User,
    dataset_id: str,
    spec: AugmentSpec,
    count: int = PREVIEW_ROWS,
) -> AugmentPreview:
    """The first `count` train rows beside their variants (made as the job will make them),
    with the rows, tokens and time the job would take."""
    from tuneforge.models.tokenizer import gemma_tokenizer

    if not 1 <= count <= MAX_PREVIEW_ROWS:
        raise InvalidInput(f"A preview shows 1 to {MAX_PREVIEW_ROWS} rows.")
    dataset = _source(session, user, dataset_id)
    check_spec(dataset, spec)
    key = parquet.split_key(dataset_prefix(dataset.owner_id, dataset.id), "processed", TRAIN)
    rows: list[dict[str, Any]] = parquet.head(store, key, count).to_pylist()
    began = time.perf_counter()
    made = [variants_of(row, index, spec) for index, row in enumerate(rows)]
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
    per_row = sum(map(len, made)) / shown
    mean_in = sum(tokens) / shown
    mean_variant = sum(map(sum, variant_tokens)) / max(sum(map(len, made)), 1)
    return AugmentPreview(
        examples=examples,
        rows_in=rows_in,
        rows_out=rows_in + round(per_row * rows_in),
        rows_out_max=rows_in * (1 + spec.copies),
        copied_splits={name: n for name, n in dataset.splits.items() if name != TRAIN},
        tokens_in=round(mean_in * rows_in),
        tokens_out=round(mean_in * rows_in + mean_variant * per_row * rows_in),
        cost=AugmentCost(
            money=0.0,
            seconds=round(JOB_OVERHEAD_SECONDS + seconds / shown * rows_in * 1.5, 1),
            note="Offline methods run on this server's CPU at no charge; the time is the "
            f"preview's {seconds / shown * 1000:.1f} ms per row (x1.5 for counting tokens and "
            f"writing) times {rows_in:,} rows, plus {JOB_OVERHEAD_SECONDS:g} s to start.",
        ),
    )


def augment_dataset(
    session: Session, settings: Settings, user: User, dataset_id: str, spec: AugmentSpec
) -> Dataset:
    """Start making the augmented dataset (in a `dataset_augment` job): `processing` until the
    job ends."""
    source = _source(session, user, dataset_id)
    check_spec(source, spec)
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
