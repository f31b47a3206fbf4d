"""Whether a run's spec fits the dataset it would learn from, every check in one call: the data
its trainer learns from (a DPO run needs preference pairs, not conversations), the checks every
trainer shares (`spec_checks.py`) and the recipe's own (`Recipe.check`).

The Train page shows the findings beside their fields, the estimate API returns them, and the
`train` kind's launch check refuses the refusals. `dataset_facts` is what the recipes' checks
know of a dataset record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.db.tables import Dataset
from tuneforge.training.parallel.ranks import one_process
from tuneforge.training.registry import recipe_for, recipes
from tuneforge.training.spec import TrainingBase
from tuneforge.training.spec_checks import DatasetFacts, Finding, check_spec, stats_of

if TYPE_CHECKING:
    from tuneforge.models.catalog import CatalogEntry

#: Each processing mode (`data/mapping.py`): what its rows hold, and how to make such a dataset.
MODES = {
    "conversation": (
        "conversations (prompts with their answers)",
        "a dataset of prompts and answers (mode conversation)",
    ),
    "language_modeling": ("plain text", "a dataset of text (mode language_modeling)"),
    "preference": (
        "preference pairs (a prompt with a chosen and a rejected answer)",
        "a dataset with chosen and rejected answers (mode preference)",
    ),
    "feedback": (
        "rated answers (a prompt with one answer marked good or bad)",
        "a dataset of answers labelled good or bad (mode feedback)",
    ),
    "prompt_only": (
        "prompts without answers (with the reference columns its graders read)",
        "a dataset of prompts (mode prompt_only)",
    ),
}
#: The reference columns of a prompt-only dataset that hold an answer, most telling first.
ANSWER_COLUMNS = ("answer", "solution", "completion", "response", "output", "label")
#: A dataset processed before modes existed holds conversations.
DEFAULT_MODE = "conversation"
#: The processed rows' column of image bytes: a dataset with it has images.
IMAGES_COLUMN = "images"
#: The trainers that feed images to a vision model.
VISION_TRAINERS = frozenset({"sft"})
#: The model families whose images training encodes (Gemma 3's fixed soft tokens per image,
#: Gemma 4's counted per image).
VISION_FAMILIES = frozenset({"gemma-3", "gemma-4"})


def dataset_facts(dataset: Dataset) -> DatasetFacts:
    """What a run's checks know of a processed dataset record."""
    mapping = (dataset.config or {}).get("mapping") or {}
    return DatasetFacts(
        mode=str(mapping.get("mode", DEFAULT_MODE)),
        columns=tuple(str(column["name"]) for column in dataset.columns or []),
        stats=stats_of(dataset.stats),
        train_rows=dataset.splits.get("train", 0),
    )


def check_run(
    spec: TrainingBase, dataset: Dataset, entry: CatalogEntry | None = None
) -> list[Finding]:
    """What is wrong with `spec` for `dataset` (warnings), or cannot work (refusals); given
    the catalog `entry` of its model, also whether that model can read the dataset's images."""
    facts = dataset_facts(dataset)
    recipe = recipe_for(spec)
    if facts.mode not in recipe.data:
        return [_wrong_data(spec.trainer, recipe.data, facts, dataset.name)]
    own = recipe.check(spec, facts) if recipe.check is not None else []
    images = _images(spec, facts, dataset.name, entry)
    return [
        *images,
        *check_spec(spec, facts.stats, facts.train_rows),
        *devices_findings(spec),
        *own,
    ]


def devices_findings(spec: TrainingBase) -> list[Finding]:
    """A refusal when the spec asks several processes of a trainer that trains in one (the
    GPUs a worker has are checked where it runs, `training/parallel/ranks.py`)."""
    if spec.devices == "auto" or spec.devices <= 1 or recipe_for(spec).distributed:
        return []
    return [
        Finding(
            ("devices",),
            one_process(spec.trainer),
            "refusal",
        )
    ]


def _images(
    spec: TrainingBase, facts: DatasetFacts, name: str, entry: CatalogEntry | None
) -> list[Finding]:
    """A dataset with images needs a vision model and a trainer that feeds it images; training
    the image side needs images."""
    if IMAGES_COLUMN not in facts.columns:
        if getattr(spec, "train_vision", None):
            return [
                Finding(
                    ("train_vision",),
                    f"The dataset {name!r} has no images, so the image side has nothing to learn "
                    "from: leave train vision empty.",
                )
            ]
        return []
    if entry is not None and entry.vision is None:
        what = (
            "is a text-only model"
            if entry.modality == "text"
            else "has no image encoder numbers in the catalog, so it cannot train on images here"
        )
        return [
            Finding(
                ("base_model", "dataset_id"),
                f"The dataset {name!r} has images, and {entry.id} {what}: choose a vision model "
                "(such as Gemma 3 4B, 12B or 27B), or a dataset without images.",
                "refusal",
            )
        ]
    if entry is not None and entry.family not in VISION_FAMILIES:
        return [
            Finding(
                ("base_model", "dataset_id"),
                f"The dataset {name!r} has images, and training on images supports Gemma 3's "
                f"and Gemma 4's vision models so far, not {entry.id}: choose one of them, or "
                "a dataset without images.",
                "refusal",
            )
        ]
    if spec.trainer not in VISION_TRAINERS:
        return [
            Finding(
                ("trainer", "dataset_id"),
                f"The dataset {name!r} has images, and {spec.trainer.upper()} trains on text "
                "only here: choose SFT for image data, or a dataset without images.",
                "refusal",
            )
        ]
    return []


def _holds(mode: str) -> str:
    return MODES.get(mode, (f"{mode} rows", ""))[0]


def _wrong_data(trainer: str, wanted: tuple[str, ...], facts: DatasetFacts, name: str) -> Finding:
    others = " or ".join(r.trainer.upper() for r in recipes() if facts.mode in r.data)
    choose = f", or choose {others}" if others else ""
    learns = f"{trainer.upper()} learns from {' or '.join(_holds(m) for m in wanted)}"
    references = [c for c in facts.columns if c != "prompt"]
    if facts.mode == "prompt_only" and "conversation" in wanted and references:
        # Prompts with a reference answer (TRL's prompt + answer): one step from conversations.
        column = next((c for c in ANSWER_COLUMNS if c in references), references[0])
        message = (
            f"{learns}; {name!r} holds prompts whose `{column}` column {others or 'GRPO'} "
            f"grades against. To learn the answers with {trainer.upper()}, process its raw "
            f"dataset again with the mode set to conversation and `{column}` as the answer "
            f"(the Datasets page's mapping form){choose}."
        )
    else:
        make = MODES.get(wanted[0], ("", f"a dataset in mode {wanted[0]}"))[1]
        message = f"{learns}; {name!r} holds {_holds(facts.mode)}. Process {make}{choose}."
    return Finding(("dataset_id",), message, "refusal")
