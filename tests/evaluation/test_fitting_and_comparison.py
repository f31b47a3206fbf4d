"""The suite that fits a dataset, and how two models' results read: "fine-tune vs base" with
the sign of the fine-tune's gain whichever of A and B it is, and the check's verdict."""

from __future__ import annotations

import pytest

from tuneforge.evaluation.comparison import comparison, delta_text, verdict
from tuneforge.evaluation.fitting import answer_budget, fitting_suite


def chat(question: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
    }


@pytest.mark.parametrize(
    ("answers", "suite"),
    [
        (["positive", "negative"] * 6, "classification"),
        (["Positive.", "**negative**", "positive", "Negative"] * 3, "classification"),
        (["Vellora."] * 12, "extraction"),  # one answer to learn: exact match, not classes
        ([f"Number {i} is red." for i in range(12)], "extraction"),
        (['{"name": "Ada", "age": 36}', "[1, 2]"] * 6, "json"),
        (["A long answer that explains a thing in more than five words."] * 12, "conversation"),
        (
            ["positive", "negative", "A much longer answer with many words in it."] * 4,
            "conversation",
        ),
    ],
)
def test_the_suite_follows_the_answers(answers: list[str], suite: str) -> None:
    records = [chat(f"Question {i}?", answer) for i, answer in enumerate(answers)]
    assert fitting_suite(records) == suite


def test_plain_text_and_prompt_only_data() -> None:
    assert fitting_suite([{"text": "Once upon a time."}] * 3) == "perplexity"
    prompt_only = [{"prompt": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}]
    assert fitting_suite(prompt_only) == "vibe"


def test_the_answer_budget_follows_the_longest_answer() -> None:
    assert answer_budget({"answer_tokens": {"max": 5}}) == 16
    assert answer_budget({"answer_tokens": {"max": 40}}) == 80
    assert answer_budget({"answer_tokens": {"max": 900}}) == 128
    assert answer_budget(None) == 64


BASE = {"id": "gemma-3-270m", "name": "Gemma 3 270M", "base": None}
TUNED = {"id": "m1", "name": "My tune", "base": "gemma-3-270m"}


@pytest.mark.parametrize("tuned_first", [True, False])
def test_a_fine_tunes_win_is_positive_whichever_slot_it_is_in(tuned_first: bool) -> None:
    tuned_metrics, base_metrics = {"accuracy": 0.5, "nll": 1.0}, {"accuracy": 1 / 6, "nll": 2.0}
    models = [TUNED, BASE] if tuned_first else [BASE, TUNED]
    metrics = [tuned_metrics, base_metrics] if tuned_first else [base_metrics, tuned_metrics]
    compared = comparison(models, metrics)
    assert compared is not None
    assert compared.label == "fine-tune vs base"
    assert models[compared.first] is TUNED
    assert delta_text("accuracy", compared.values["accuracy"]) == "+33.3 pts"
    assert delta_text("nll", compared.values["nll"]) == "-1.000"  # lower: better


def test_two_base_models_read_b_vs_a_and_a_foreign_base_is_named() -> None:
    other = {"id": "gemma-3-1b-it", "name": "Gemma 3 1B", "base": None}
    compared = comparison([BASE, other], [{"f1": 0.2}, {"f1": 0.5}])
    assert compared is not None and compared.label == "B vs A"
    assert compared.values["f1"] == pytest.approx(0.3)
    against = comparison([TUNED, other], [{"f1": 0.2}, {"f1": 0.5}])
    assert against is not None and against.label == "fine-tune vs Gemma 3 1B"
    assert comparison([BASE], [{"f1": 0.2}]) is None


def result(suite: str, right: list[int] | None, metrics: list[dict]) -> dict:
    return {
        "suite": suite,
        "models": [TUNED, BASE],
        "metrics": metrics,
        "right": right,
        "count": 12,
    }


def test_the_verdict_in_plain_words() -> None:
    won = result("extraction", [11, 0], [{"exact_match": 11 / 12}, {"exact_match": 0.0}])
    assert verdict(won) == "Learned: 11/12 answers now match, base 0/12."
    same = result("classification", [3, 3], [{"accuracy": 0.25}, {"accuracy": 0.25}])
    assert verdict(same) == "No change yet: 3/12 answers match, base 3/12."
    lost = result("conversation", [2, 5], [{"rougeL": 0.2}, {"rougeL": 0.4}])
    assert verdict(lost) == (
        "Worse than the base: 2/12 answers are close to the reference, base 5/12."
    )
    ppl = result(
        "perplexity", None, [{"perplexity": 3.0, "nll": 1.1}, {"perplexity": 9.0, "nll": 2.2}]
    )
    assert verdict(ppl) == "Learned: perplexity 3.000, base 9.000."
