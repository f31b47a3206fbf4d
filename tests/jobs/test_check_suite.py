"""The automatic before/after check scores a run the way its data or its graders call for."""

from __future__ import annotations

from tuneforge.db.tables import Dataset, Model
from tuneforge.jobs.check import fitting_evaluation

PROMPT = [{"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]}]
GRADERS = [
    {"type": "regex", "name": "format", "pattern": r"<answer>\d+</answer>", "weight": 1.0},
    {"type": "numeric_match", "name": "number", "column": "answer", "weight": 2.0},
]


def _model(spec: dict) -> Model:
    return Model(id="m1", base_model="tiny-random-gemma3", spec=spec)


def test_a_grpo_model_is_checked_by_its_own_graders_at_its_answer_length() -> None:
    dataset = Dataset(id="d1", stats={"answer_tokens": {"max": 10}})
    records = [{"prompt": PROMPT, "answer": "5"}]
    spec = fitting_evaluation(
        _model({"trainer": "grpo", "graders": GRADERS, "max_completion_length": 48}),
        dataset,
        "test",
        records,
    )
    assert spec.suite == "rewards"
    assert [g.name for g in spec.graders or []] == ["format", "number"]
    assert spec.max_new_tokens == 48 and spec.compare_with == "tiny-random-gemma3"


def test_a_model_without_graders_gets_the_suite_that_fits_its_data() -> None:
    dataset = Dataset(id="d1", stats={"answer_tokens": {"max": 10}})
    chosen = [{"role": "assistant", "content": [{"type": "text", "text": "5"}]}]
    rejected = [{"role": "assistant", "content": [{"type": "text", "text": "6"}]}]
    records = [{"prompt": PROMPT, "chosen": chosen, "rejected": rejected}]
    spec = fitting_evaluation(_model({"trainer": "dpo"}), dataset, "test", records)
    assert spec.suite == "preference" and spec.graders is None and spec.max_new_tokens == 20
