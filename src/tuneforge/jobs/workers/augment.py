"""The `dataset_augment` job: the new dataset's train split augmented, its other splits copied.

With an LLM method, the generators are checked again as the owner (the endpoint policy, the key
secret, a local model being the owner's to use), opened here with their keys, and closed at the
end; their requests go out concurrently, and a cancel stops sending them."""

from __future__ import annotations

from tuneforge.data.augment.llm import Rewriter, close_all, key_secrets, open_generators
from tuneforge.data.augment.spec import AugmentSpec
from tuneforge.data.augment.stored import augment_stored
from tuneforge.data.stored import dataset_prefix
from tuneforge.data.synthesis.generator import LocalGenerator
from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.inference.params import ModelRef
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.endpoints import check_generator
from tuneforge.jobs.inputs import usable_model
from tuneforge.jobs.kinds.dataset import DatasetJobSpec, DatasetResult
from tuneforge.jobs.workers.dataset_process import dataset_of, saved


def _generator_inputs(
    ctx: JobContext, how: AugmentSpec
) -> tuple[dict[str, str], dict[str, ModelRef]]:
    """The API keys by secret name and the local models' refs by id, checked as the owner."""
    methods = how.llm_methods()
    if not methods:
        return {}, {}
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The augmentation's owner no longer exists.")
        refs: dict[str, ModelRef] = {}
        for method in methods:
            check_generator(method.generator, owner, ctx.settings)  # an address may have changed
            if isinstance(method.generator, LocalGenerator):
                model = method.generator.model
                refs[model] = usable_model(session, owner, ctx.settings, model).ref
        names = key_secrets(methods)
        keys = secret_values(session, ctx.settings, owner.id, names)
    if gone := sorted(names - keys.keys()):
        raise InvalidInput(f"The generator's key secret {gone[0]} was deleted; set it again.")
    return keys, refs


def run(spec: DatasetJobSpec, ctx: JobContext) -> DatasetResult:
    def progress(done: float) -> None:
        ctx.check_cancelled()
        ctx.progress(done, "augmenting the train split")

    target = dataset_of(ctx, spec.dataset_id)
    source = dataset_of(ctx, target.source_id) if target.source_id else None
    if source is None or source.status != "ready":
        raise InvalidInput("The source dataset was deleted.")
    augmentation = (target.config or {})["augmentation"]
    how = AugmentSpec.model_validate(augmentation["spec"])
    ctx.log(
        f"augmenting {source.splits.get('train', 0):,} train rows of {source.name!r} with "
        f"{', '.join(how.method_names())} ({how.copies} per row, seed {how.seed})"
    )
    keys, refs = _generator_inputs(ctx, how)
    generators = open_generators(how.llm_methods(), keys, ctx.settings, refs)
    try:
        rewriter = (
            Rewriter(generators, should_stop=lambda: ctx.cancel_requested) if generators else None
        )
        target.fill(
            augment_stored(
                ctx.store,
                ctx.settings,
                (dataset_prefix(source.owner_id, source.id), source.splits, source.config or {}),
                dataset_prefix(target.owner_id, target.id),
                how,
                progress,
                rewriter,
            )
        )
    finally:
        close_all(generators)
    ctx.log(f"{target.rows:,} rows in {len(target.splits)} split(s): {'; '.join(target.warnings)}")
    return saved(ctx, target)
