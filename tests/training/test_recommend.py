"""Recommendations: each a valid setting with a plain reason, and together a run that fits."""

from __future__ import annotations

import pytest

from tests.training.test_estimate import cpu, gpu, model, stats
from tuneforge.hardware import Hardware
from tuneforge.models.catalog import catalog
from tuneforge.training.estimate import estimate
from tuneforge.training.recommend import Recommendation, apply, recommend
from tuneforge.training.spec import SFTSpec


def by_field(recommendations: list[Recommendation]) -> dict[str, Recommendation]:
    fields = [r.field for r in recommendations]
    assert len(fields) == len(set(fields)), f"a field is recommended twice: {fields}"
    return {r.field: r for r in recommendations}


def as_spec(recommendations: list[Recommendation], model_id: str) -> SFTSpec:
    return SFTSpec(**apply(recommendations, {"base_model": model_id, "dataset_id": "d"}))


def lengths(p95: int, rows: int = 1000, test: int = 100) -> dict[str, object]:
    total: dict[str, object] = {"count": rows, "min": 10, "mean": p95 / 2, "p50": p95 // 2}
    total |= {"p90": p95 * 9 // 10, "p95": p95, "p99": p95 + 10, "max": p95 + 20, "histogram": []}
    return {
        "rows": {"train": rows - test, "test": test},
        "total_tokens": total,
        "answer_tokens": {**total, "mean": p95 / 6},
    }


def test_max_length_comes_from_the_95th_percentile() -> None:
    entry = model("gemma-3-270m")
    for p95, expected in ((450, 512), (512, 512), (513, 576), (20, 64)):
        advice = by_field(recommend(entry, lengths(p95), 900, cpu()))["max_length"]
        assert advice.value == expected, p95
        assert f"95% of your examples are at most {p95} tokens" in advice.reason


def test_max_length_is_capped_by_the_model_context() -> None:
    entry = model("gemma-3-270m")
    advice = by_field(recommend(entry, lengths(40_000), 900, gpu(free=79)))["max_length"]
    assert advice.value == entry.context_length
    assert str(entry.context_length) in advice.reason


def test_max_length_without_statistics_is_the_model_default() -> None:
    entry = model("gemma-3-270m")
    advice = by_field(recommend(entry, None, 900, cpu()))["max_length"]
    assert advice.value == entry.defaults.get("max_length", 1024)
    assert "statistics" in advice.reason


@pytest.mark.parametrize(
    ("rows", "epochs"), [(40, 5), (99, 5), (100, 3), (499, 3), (500, 2), (4999, 2), (5000, 1)]
)
def test_epochs_follow_the_dataset_size(rows: int, epochs: int) -> None:
    advice = by_field(recommend(model("gemma-3-270m"), stats(), rows, cpu()))["epochs"]
    assert advice.value == epochs
    assert str(rows) in advice.reason


def test_every_recommendation_has_a_one_line_reason() -> None:
    for hardware in (cpu(), cpu(bf16=False), gpu()):
        for advice in recommend(model("gemma-3-270m"), stats(), 900, hardware):
            assert advice.reason.strip() and "\n" not in advice.reason, advice.field
            assert advice.reason[0].isupper() or advice.reason[0].isdigit(), advice.reason
            assert advice.reason.endswith("."), advice.reason


def test_precision_says_why() -> None:
    entry = model("gemma-3-270m")
    assert by_field(recommend(entry, stats(), 900, cpu(bf16=True)))["precision"].value == "bf16"
    fallback = by_field(recommend(entry, stats(), 900, cpu(bf16=False)))["precision"]
    assert fallback.value == "fp32" and "no bf16" in fallback.reason
    t4 = gpu(name="Tesla T4", capability="7.5")
    assert by_field(recommend(entry, stats(), 900, t4))["precision"].value == "fp16"


def test_learning_rate_and_lora_settings_come_from_the_catalog() -> None:
    for entry in catalog().models:
        advice = by_field(recommend(entry, stats(), 900, gpu(free=79)))
        assert advice["learning_rate"].value == entry.defaults.get("learning_rate", 2e-4)
        if "lora_r" in entry.defaults:
            assert advice["lora_r"].value == entry.defaults["lora_r"]


@pytest.mark.parametrize("trainer", ["dpo", "orpo", "kto"])
def test_preference_trainers_get_their_own_gentler_learning_rate_and_a_run_that_fits(
    trainer: str,
) -> None:
    from tuneforge.training.registry import recipe

    entry = model("gemma-3-270m")
    spec_type = recipe(trainer).spec
    advice = recommend(entry, lengths(300), 900, cpu(), trainer=trainer)
    found = by_field(advice)
    assert found["learning_rate"].value == spec_type.model_fields["learning_rate"].default
    assert found["learning_rate"].value < 2e-4 and "gently" in found["learning_rate"].reason
    spec = spec_type(**apply(advice, {"base_model": entry.id, "dataset_id": "d"}))
    assert estimate(spec, entry, lengths(300), 900, cpu()).fits
    sft = by_field(recommend(entry, lengths(300), 900, cpu()))
    # A pair holds two answers' activations: its batch is at most SFT's.
    assert found["batch_size"].value <= sft["batch_size"].value


@pytest.mark.parametrize(
    ("model_id", "hardware"),
    [
        ("gemma-3-270m", cpu()),
        ("gemma-3-270m", cpu(available=4)),
        ("tiny-random-gemma3", cpu(available=2)),
        ("gemma-3-1b", cpu()),
        ("gemma-3-4b", gpu(free=23)),
        ("gemma-3-27b", gpu(free=79)),
    ],
)
def test_recommended_settings_validate_and_fit(model_id: str, hardware: Hardware) -> None:
    entry = catalog().get(model_id)
    assert entry is not None, f"{model_id} is in the catalog"
    data = stats()
    recommendations = recommend(entry, data, 900, hardware)
    spec = as_spec(recommendations, model_id)
    result = estimate(spec, entry, data, 900, hardware)
    assert result.fits, result.refusal
    assert result.peak_memory_bytes <= result.available_memory_bytes
    assert spec.effective_batch >= 8  # 900 examples: 16, whatever the micro-batch
    advice = by_field(recommendations)
    assert advice["eval_every"].value == max(1, result.steps // 10)
    assert 1 <= advice["checkpoint_every"].value <= max(1, result.steps // 2)


def test_the_batch_follows_the_free_memory() -> None:
    entry, data = model("gemma-3-270m"), stats()
    roomy = as_spec(recommend(entry, data, 900, cpu(available=64)), entry.id)
    tight = as_spec(recommend(entry, data, 900, cpu(available=3)), entry.id)
    assert roomy.batch_size > tight.batch_size or tight.gradient_checkpointing
    assert roomy.effective_batch == tight.effective_batch == 16
    assert not roomy.gradient_checkpointing


def test_small_datasets_keep_enough_steps() -> None:
    spec = as_spec(recommend(model("gemma-3-270m"), stats(), 60, cpu()), "gemma-3-270m")
    assert spec.effective_batch == 4  # 60 rows: 15 steps an epoch rather than 4


def test_qlora_when_lora_does_not_fit_the_gpu() -> None:
    entry = catalog().get("gemma-3-27b")
    assert entry is not None, "gemma-3-27b is in the catalog"
    advice = by_field(recommend(entry, stats(), 900, gpu(free=23)))
    assert advice["method"].value == "qlora"
    assert by_field(recommend(entry, stats(), 900, gpu(free=79)))["method"].value == "lora"


def test_no_test_split_means_no_evaluation() -> None:
    advice = by_field(recommend(model("gemma-3-270m"), lengths(300, test=0), 1000, cpu()))
    assert advice["eval_every"].value == 0
    assert "no test split" in advice["eval_every"].reason


def test_apply_sets_the_recommended_values_over_the_base() -> None:
    recommendations = [
        Recommendation(field="epochs", value=2, reason="Because."),
        Recommendation(field="max_length", value=512, reason="Because."),
    ]
    base = {"base_model": "gemma-3-270m", "dataset_id": "d", "epochs": 5, "seed": 7}
    assert apply(recommendations, base) == {**base, "epochs": 2, "max_length": 512}
    assert base["epochs"] == 5, "the base is not changed"


def test_a_trainer_with_required_settings_it_cannot_recommend_still_gets_recommendations() -> None:
    from typing import Literal

    from pydantic import Field

    from tuneforge.training.recipe import Batching, Recipe
    from tuneforge.training.registry import register, unregister
    from tuneforge.training.spec import TrainingBase

    class Graded(TrainingBase):
        trainer: Literal["graded"] = Field(default="graded", description="A test trainer.")
        graders: list[str] = Field(min_length=1, description="Chosen by the user, always.")

    register(
        Recipe(
            trainer="graded",
            title="Graded",
            description="A trainer with a required setting.",
            spec=Graded,
            train=lambda *args, **kwargs: None,  # type: ignore[arg-type,return-value]
            batching=lambda spec: Batching(packed=True, answers_only=True),
            presets="{model}_{method}_graded",
        )
    )
    try:
        advice = by_field(
            recommend(model("gemma-3-270m"), lengths(300), 900, cpu(), trainer="graded")
        )
    finally:
        unregister("graded")
    assert {"batch_size", "learning_rate", "max_length", "eval_every"} <= set(advice)
    assert "graders" not in advice
