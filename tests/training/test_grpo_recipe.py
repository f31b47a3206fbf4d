"""GRPO's recipe record: its spec's refusals, its data, its column check, batching and judges."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tuneforge.data.conversation import message
from tuneforge.training.recipes.grpo import RECIPE, GRPOSpec, generation_seed, prompt_of
from tuneforge.training.spec_checks import DatasetFacts

GRADERS = [
    {"type": "regex", "name": "format", "pattern": "<answer>"},
    {"type": "numeric_match", "name": "number", "column": "answer"},
]


def spec(**values: object) -> GRPOSpec:
    base = {"trainer": "grpo", "base_model": "gemma-3-270m", "dataset_id": "d", "graders": GRADERS}
    return GRPOSpec.model_validate(base | values)


def test_the_spec_refuses_what_cannot_run_saying_why() -> None:
    with pytest.raises(ValidationError, match="graders"):
        spec(graders=[])
    with pytest.raises(ValidationError, match="second copy of the model"):
        spec(method="full", beta=0.1)
    assert spec(method="full").beta == 0
    with pytest.raises(ValidationError, match="max_length"):
        spec(max_completion_length=512, max_length=512)
    with pytest.raises(ValidationError, match="greater than or equal to 2"):
        spec(num_generations=1)


def test_a_grader_reading_a_missing_column_is_a_refusal_naming_graders() -> None:
    prompts = DatasetFacts("prompt_only", ("prompt", "answer"), None, 10)
    assert RECIPE.check is not None and RECIPE.check(spec(), prompts) == []
    wrong = spec(graders=[*GRADERS, {"type": "exact_match", "name": "solved", "column": "sol"}])
    [finding] = RECIPE.check(wrong, prompts)
    assert finding.severity == "refusal" and finding.fields == ("graders",)
    assert "'solved'" in finding.message and "'sol'" in finding.message
    # A conversation's last answer is the `answer` column.
    conversations = DatasetFacts("conversation", ("messages",), None, 10)
    assert RECIPE.check(spec(), conversations) == []
    assert RECIPE.data == ("prompt_only", "conversation")


def test_a_conversation_gives_its_prompt_and_its_last_answer_as_the_answer_column() -> None:
    record = {"messages": [message("user", "2 + 2?"), message("assistant", "<answer>4</answer>")]}
    prompt, row = prompt_of(record)
    assert prompt == [message("user", "2 + 2?")] and row["answer"] == "<answer>4</answer>"
    only = {"prompt": [message("user", "2 + 2?")], "answer": "4"}
    assert prompt_of(only) == (only["prompt"], only)


def test_batching_counts_generations_and_reference_passes() -> None:
    plain = RECIPE.batching(spec(num_generations=6, max_completion_length=100))
    assert (plain.sequences, plain.reference_passes, plain.generated_tokens) == (6, 0, 600)
    assert RECIPE.batching(spec(beta=0.04)).reference_passes == 4


def test_judges_are_the_judge_graders_and_seeds_differ_by_step_and_batch() -> None:
    assert RECIPE.judges is not None and RECIPE.judges(spec()) == []
    judge = {
        "type": "judge",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "rubric": "Short answers.",
    }
    [called] = RECIPE.judges(spec(graders=[*GRADERS, judge]))
    assert called.base_url == "http://127.0.0.1:9/v1"
    seeds = {generation_seed(42, step, batch) for step in (1, 2) for batch in (0, 1)}
    assert len(seeds) == 4 and generation_seed(42, 2, 1) == generation_seed(42, 2, 1)
