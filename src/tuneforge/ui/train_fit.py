"""Which datasets a trainer can learn from, in words: each processed dataset has a mode
(conversations, preference pairs, rated answers, prompts, plain text) and each recipe names the
modes it learns from (`Recipe.data`; `training/run_checks.py` says what each mode holds). The
Train page offers the datasets that do not fit the chosen trainer disabled, saying why, and says
how to get one that fits."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuneforge.data.conversation import text_of
from tuneforge.db.tables import Dataset, User
from tuneforge.services import datasets as dataset_service
from tuneforge.storage import ArtifactStore
from tuneforge.training.recipe import Recipe
from tuneforge.training.rewards.spec import ANSWER_COLUMN
from tuneforge.training.run_checks import MODES, dataset_facts

#: A dataset's mode in a word or two, as the dataset picker labels it.
MODE_NAMES = {
    "conversation": "conversations",
    "language_modeling": "plain text",
    "preference": "preference pairs",
    "feedback": "rated answers",
    "prompt_only": "prompts",
}


def mode_of(dataset: Dataset) -> str:
    return dataset_facts(dataset).mode


def mode_name(mode: str) -> str:
    return MODE_NAMES.get(mode, mode.replace("_", " "))


def _holds(mode: str) -> str:
    return MODES.get(mode, (mode_name(mode), ""))[0]


def either(words: list[str]) -> str:
    """ "A, B or C"."""
    return " or ".join(filter(None, [", ".join(words[:-1]), words[-1]])) if words else ""


def learns_from(recipe: Recipe[Any]) -> str:
    """One line on what a trainer learns from: "Learns from preference pairs (...)."."""
    return "Learns from " + " or ".join(_holds(mode) for mode in recipe.data) + "."


def misfit(recipe: Recipe[Any], dataset: Dataset, others: list[Recipe[Any]]) -> str | None:
    """Why `recipe` cannot learn from `dataset` (None when it can), and which of the `others`
    can."""
    mode = mode_of(dataset)
    if mode in recipe.data:
        return None
    wanted = " or ".join(mode_name(m) for m in recipe.data)
    fitting = [r.trainer.upper() for r in others if mode in r.data]
    instead = f"; {either(fitting)} learns from it" if fitting else ""
    return f"Holds {mode_name(mode)}: {recipe.title} needs {wanted}{instead}."


def how_to_fit(recipe: Recipe[Any]) -> str:
    """What to do when none of the user's datasets fits `recipe`."""
    wanted = " or ".join(_holds(m) for m in recipe.data)
    make = MODES.get(recipe.data[0], ("", f"a dataset in mode {recipe.data[0]}"))[1]
    return (
        f"None of your datasets fits {recipe.title}: it learns from {wanted}. On the Datasets "
        f"page, upload and process {make}."
    )


def fitting_trainer(recipes: list[Recipe[Any]], dataset: Dataset, current: str) -> str:
    """The trainer to offer for `dataset`: `current` when it fits, else the first that does."""
    mode = mode_of(dataset)
    by_trainer = {r.trainer: r for r in recipes}
    if current in by_trainer and mode in by_trainer[current].data:
        return current
    return next((r.trainer for r in recipes if mode in r.data), current)


def grader_columns(dataset: Dataset) -> list[str]:
    """The columns graders can read in `dataset`'s rows: its own, and in a conversation
    dataset `answer` (the conversation's last answer)."""
    columns = [str(c["name"]) for c in dataset.columns or []]
    if mode_of(dataset) == "conversation":
        return [ANSWER_COLUMN, *columns]
    return columns


def first_row(
    session: Session, store: ArtifactStore, user: User, dataset: Dataset
) -> dict[str, Any] | None:
    """The first row of the dataset's test split (of its train split without one) as graders
    read it (a conversation as its prompt and its last answer): what they are tried on."""
    split = "test" if dataset.splits.get("test") else "train"
    _, rows, _ = dataset_service.dataset_rows(
        session, store, user, dataset.id, split=split, offset=0, limit=1
    )
    if not rows:
        return None
    row = rows[0]
    messages = row.get("messages")
    if messages and messages[-1].get("role") == "assistant":
        return {"prompt": messages[:-1], ANSWER_COLUMN: text_of(messages[-1])}
    return row
