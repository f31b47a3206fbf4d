"""The rewards and preference suites with tiny-random-gemma3: the rewards suite's means per
grader and in total recomputed from the stored answers (prompt-only and conversation rows, a
judge grader through the loopback judge server with the owner's key), and preference accuracy
and margins checked against a direct computation (a plain forward pass and log-softmax over
each answer's tokens) for a LoRA fine-tune and its base, per token and summed."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from tests.evaluation.judge_server import judge_server
from tuneforge.data.conversation import message
from tuneforge.evaluation.comparison import value_text, verdict
from tuneforge.evaluation.fitting import fitting_suite
from tuneforge.evaluation.run import run_evaluation
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.inference.params import ModelRef
from tuneforge.models.chat_template import render
from tuneforge.models.loading import load_causal_lm, load_tokenizer
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore
from tuneforge.training.rewards.grade import GraderSet
from tuneforge.training.rewards.spec import GRADERS


@pytest.fixture
def settings(library_settings: Settings) -> Settings:
    """The evaluation runs here as in its worker, which opens no database."""
    return library_settings


TINY = "tiny-random-gemma3"
KEY = "sk-judge-0123456789-secret"


def spec(**values: object) -> EvaluationSpec:
    return EvaluationSpec.model_validate(
        {"model": TINY, "dataset_id": "d", "max_new_tokens": 5} | values
    )


def prompt_only(i: int) -> dict:
    return {"prompt": [message("user", f"What is {i} + {i}?")], "answer": str(2 * i)}


GRADER_SET = [
    {"type": "numeric_match", "column": "answer", "weight": 2.0},
    {"type": "length", "maximum": 3, "name": "short"},
    {"type": "phrases", "forbidden": ["<unused"], "weight": 0.5},
]


def test_the_spec_takes_graders_for_the_rewards_suite_only() -> None:
    assert spec(suite="rewards", graders=GRADER_SET).graders is not None
    with pytest.raises(ValidationError, match="the rewards suite needs `graders`"):
        spec(suite="rewards")
    with pytest.raises(ValidationError, match="the rewards suite needs `graders`"):
        spec(suite="vibe", graders=GRADER_SET)
    with pytest.raises(ValidationError, match="two graders are named"):
        spec(suite="rewards", graders=[GRADER_SET[0], GRADER_SET[0]])
    judge = {"base_url": "http://h/v1", "model": "m"}
    with pytest.raises(ValidationError, match="the preference suite generates none"):
        spec(suite="preference", judge=judge)
    grader = {"type": "judge", "base_url": "http://g/v1", "model": "g", "rubric": "Be kind."}
    both = spec(suite="rewards", graders=[grader], judge=judge)
    assert [j.base_url for j in both.judges()] == ["http://h/v1", "http://g/v1"]


@pytest.mark.timeout(300)
def test_rewards_are_the_graders_means_over_the_answers(settings: Settings, tiny_model) -> None:
    records = [prompt_only(i) for i in range(5)]
    records.append(  # a conversation: its last answer is the column `answer`
        {"messages": [message("user", "Say 4."), message("assistant", "4")]}
    )
    graders = [*GRADER_SET, {"type": "exact_match", "column": "answer", "weight": 0.0}]
    outcome = run_evaluation(
        spec(suite="rewards", graders=graders),
        [ModelRef(base=TINY)],
        records,
        settings,
        lambda *_: None,
        threading.Event(),
    )
    rows = outcome.rows
    assert len(rows) == 6 and outcome.skipped == 0
    answers = [row["answers"]["A"] for row in rows]
    # Recomputed by the graders from the stored answers and the rows.
    graded = [dict(records[row["index"]]) for row in rows]
    graded[5]["answer"] = "4"
    expected = GraderSet(GRADERS.validate_python(graders)).score(answers, graded)
    for row, scores in zip(rows, expected, strict=True):
        got = row["scores"]["A"]
        assert got["reward"] == pytest.approx(scores.total)
        assert got["score"] == pytest.approx(scores.total / 3.5)
        for name, value in scores.grades.items():
            assert got[f"reward/{name}"] == value
            assert got[f"reason/{name}"] == scores.reasons[name]
    (metrics,) = outcome.metrics
    assert metrics["reward"] == pytest.approx(sum(s.total for s in expected) / 6)
    for name in ("numeric_match", "short", "phrases", "exact_match"):
        mean = sum(s.grades[name] for s in expected) / 6
        assert metrics[f"reward/{name}"] == pytest.approx(mean)
    assert outcome.details == [
        {"graders": ["numeric_match", "short", "phrases", "exact_match"], "max_reward": 3.5}
    ]
    # The prompt-only rows have their own `answer`; the conversation's is its last answer (the
    # per-sample reasons above match only if the suite gave the graders that column).
    assert [row["reference"] for row in rows] == [None] * 5 + ["4"]


@pytest.mark.timeout(300)
def test_a_judge_grader_in_the_rewards_suite(settings: Settings, tiny_model) -> None:
    records = [prompt_only(i) for i in range(3)]
    with judge_server(KEY) as server:
        grader = {
            "type": "judge",
            "base_url": server.url,
            "model": "grader",
            "api_key_secret": "JUDGE_KEY",
            "rubric": "Only the sum counts.",
            "column": "answer",
        }
        outcome = run_evaluation(
            spec(suite="rewards", graders=[grader]),
            [ModelRef(base=TINY)],
            records,
            settings,
            lambda *_: None,
            threading.Event(),
            {"JUDGE_KEY": KEY},
        )
        assert len(server.requests) == 3
        assert {r["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    # The fake judge gives 10 only to an answer that holds the reference; a random model's
    # answers do not hold the sums.
    for row in outcome.rows:
        answer, reference = row["answers"]["A"], records[row["index"]]["answer"]
        assert row["scores"]["A"]["reward/judge"] == (1.0 if reference in answer else 0.0)
    assert outcome.metrics[0]["reward"] == outcome.metrics[0]["reward/judge"]


def pair(question: str, chosen: str, rejected: str) -> dict:
    return {
        "prompt": [message("user", question)],
        "chosen": [message("assistant", chosen)],  # one assistant message, as processed
        "rejected": [message("assistant", rejected)],
    }


PAIRS = [
    pair("Capital of France?", "Paris.", "I do not know, sorry, maybe Lyon or Marseille."),
    pair("2 + 2?", "4", "5"),
    pair("Greet me.", "Hello there, how are you today?", "Go away."),
    pair("Name a colour.", "Blue", "Blue"[::-1]),
]


def _direct_logprob(
    model: torch.nn.Module, tokenizer, record: dict, side: str
) -> tuple[float, int]:
    """Summed log-probability and count of the tokens of one answer and its `<end_of_turn>`,
    from the model's full logits."""

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    messages = [*record["prompt"], *record[side]]
    ids = torch.tensor([encode(render(messages))])
    start = len(encode(render(record["prompt"], add_generation_prompt=True)))
    end = len(encode(render(messages))) - 1  # not the "\n" after the turn
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    index = torch.arange(start, end)
    logprobs = F.log_softmax(logits[index - 1], dim=-1).gather(1, ids[0, index, None])
    return float(logprobs.sum()), end - start


@pytest.mark.timeout(300)
@pytest.mark.parametrize("length_normalized", [True, False])
def test_preference_accuracy_and_margin_match_a_direct_computation(
    settings: Settings, tiny_model: Path, tiny_adapter: Path, length_normalized: bool
) -> None:
    assert fitting_suite(PAIRS) == "preference"
    key = "owner/train/fixture/model"
    ArtifactStore(settings.resolved_storage_url).put_dir(key, tiny_adapter)
    refs = [ModelRef(base=TINY, artifact_key=key, kind="adapter"), ModelRef(base=TINY)]
    progress: list[tuple[str, int, int]] = []
    outcome = run_evaluation(
        spec(
            suite="preference",
            model="tuned",
            compare_with=TINY,
            length_normalized=length_normalized,
        ),
        refs,
        [*PAIRS, {"messages": [message("user", "no pair")]}],
        settings,
        lambda *step: progress.append(step),
        threading.Event(),
    )
    assert outcome.skipped == 1 and len(outcome.rows) == 4
    assert progress == [(label, 4, done) for label in "AB" for done in range(5)]
    from peft import PeftModel

    base = load_causal_lm(tiny_model, torch.float32)
    tuned = PeftModel.from_pretrained(copy.deepcopy(base), tiny_adapter).eval()
    tokenizer = load_tokenizer(tiny_model)
    for label, model, metrics in zip("AB", [tuned, base], outcome.metrics, strict=True):
        margins, right = [], 0
        for row in outcome.rows:
            record = PAIRS[row["index"]]
            values = []
            for side in ("chosen", "rejected"):
                total, tokens = _direct_logprob(model, tokenizer, record, side)
                values.append(total / tokens if length_normalized else total)
            got = row["scores"][label]
            assert got["chosen_logprob"] == pytest.approx(values[0], rel=1e-4, abs=1e-4)
            assert got["rejected_logprob"] == pytest.approx(values[1], rel=1e-4, abs=1e-4)
            assert got["correct"] == (got["margin"] > 0) and got["cut"] is False
            margins.append(values[0] - values[1])
            right += got["correct"]
        assert metrics["margin"] == pytest.approx(sum(margins) / 4, rel=1e-4, abs=1e-4)
        assert metrics["preference_accuracy"] == right / 4
    assert outcome.metrics[0]["margin"] != pytest.approx(outcome.metrics[1]["margin"])
    assert outcome.details[0] == {"length_normalized": length_normalized, "cut": 0}
    assert all(row["answers"] == {} for row in outcome.rows)


def test_the_verdicts_of_the_new_suites_read_in_their_own_words() -> None:
    models = [{"id": "m1", "name": "tuned", "base": TINY}, {"id": TINY, "name": TINY}]
    preference = {
        "suite": "preference",
        "models": models,
        "metrics": [{"preference_accuracy": 0.9, "margin": 0.4}, {"preference_accuracy": 0.5}],
        "right": [9, 5],
        "count": 10,
    }
    assert verdict(preference) == "Learned: 9/10 pairs now prefer the chosen answer, base 5/10."
    rewards = {**preference, "suite": "rewards", "metrics": [{"reward": 2.5}, {"reward": 1.0}]}
    assert verdict(rewards) == (
        "Learned: 9/10 answers now earn at least half the reward, base 5/10."
    )
    assert (value_text("reward", 2.5), value_text("margin", -0.25)) == ("2.500", "-0.250")
