"""Which datasets a trainer learns from, as the Train page says it."""

from __future__ import annotations

from tuneforge.db.tables import Dataset
from tuneforge.training.registry import recipe, recipes
from tuneforge.ui.train_fit import (
    either,
    fitting_trainer,
    grader_columns,
    how_to_fit,
    learns_from,
    misfit,
)


def dataset(mode: str | None) -> Dataset:
    config = {"mapping": {"mode": mode}} if mode else {}
    return Dataset(name="Mine", config=config, columns=[], splits={"train": 8})


def test_a_dataset_that_does_not_fit_says_what_it_holds_and_who_learns_from_it() -> None:
    pairs, chats = dataset("preference"), dataset("conversation")
    assert misfit(recipe("dpo"), pairs, recipes()) is None
    said = misfit(recipe("sft"), pairs, recipes())
    assert said is not None
    assert said.startswith("Holds preference pairs: Supervised fine-tuning (SFT) needs ")
    assert said.endswith("; DPO, KTO or ORPO learns from it.")
    assert misfit(recipe("dpo"), chats, []) == (
        "Holds conversations: Direct preference optimisation (DPO) needs preference pairs."
    )
    assert misfit(recipe("sft"), dataset(None), []) is None  # processed before modes existed


def test_the_trainer_follows_the_data_and_says_how_to_get_data_that_fits() -> None:
    assert fitting_trainer(recipes(), dataset("preference"), "sft") == "dpo"
    assert fitting_trainer(recipes(), dataset("preference"), "orpo") == "orpo"
    assert fitting_trainer(recipes(), dataset("prompt_only"), "sft") == "grpo"
    assert "preference pairs (a prompt with a chosen and a rejected answer)" in learns_from(
        recipe("dpo")
    )
    assert how_to_fit(recipe("dpo")).startswith(
        "None of your datasets fits Direct preference optimisation (DPO): it learns from "
    )
    assert "On the Datasets page, upload and process" in how_to_fit(recipe("dpo"))
    assert [either([]), either(["A"]), either(["A", "B", "C"])] == ["", "A", "A, B or C"]


def test_graders_read_a_conversations_last_answer_as_its_answer_column() -> None:
    chats = dataset("conversation")
    chats.columns = [{"name": "messages", "type": "list"}]
    prompts = dataset("prompt_only")
    prompts.columns = [{"name": "prompt", "type": "list"}, {"name": "label", "type": "string"}]
    assert grader_columns(chats) == ["answer", "messages"]
    assert grader_columns(prompts) == ["prompt", "label"]
