"""Curation: every drop reason, groundedness, MinHash near-duplicates, and the LLM judge
(against the loopback server)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from tests.llm_server import LlmServer
from tuneforge.data.synthesis.curate import (
    CurationSettings,
    MinHash,
    check_pair,
    groundedness,
    judge_pairs,
    judge_spec,
    near_duplicates,
)
from tuneforge.evaluation.judge import Judge, JudgeFailed, JudgeSpec

SOURCE = (
    "The X200 pump delivers at most 5 bar. Install it on a level floor, at least 30 cm from "
    "the wall, and connect it to a 230 V socket. Clean the filter every 200 hours of running."
)
SETTINGS = CurationSettings()


def _reason(prompt: str, answer: str, asks: bool = True, **settings: Any) -> str | None:
    drop = check_pair(prompt, answer, SOURCE, CurationSettings(**settings), asks)
    return None if drop is None else drop.reason


def test_a_good_grounded_pair_passes() -> None:
    assert _reason("How far from the wall should the X200 be installed?", "At least 30 cm.") is None
    assert _reason("How often is the X200 filter cleaned?", "Every 200 hours of running.") is None


@pytest.mark.parametrize(
    ("prompt", "answer", "reason"),
    [
        ("Why?", "Because the pump needs it.", "too_short"),
        ("What is the pressure of the X200?", "5" * 5000, "too_long"),
        ("State the X200's pressure", "At most 5 bar.", "not_a_question"),
        ("What does the passage say about the X200?", "It delivers 5 bar.", "not_standalone"),
        ("According to the text, what voltage does it need?", "230 V.", "not_standalone"),
        ("What voltage does the X200 need?", "What voltage does the X200 need?", "copies_question"),
        ("What voltage does the X200 need?", "I'm sorry, I cannot answer that.", "refusal"),
        ("What colour is the X200?", "The colour is not mentioned in the passage.", "refusal"),
        (
            "Who invented the X200?",
            "It was designed by Ingrid Larsen in Copenhagen during 1987.",
            "ungrounded",
        ),
    ],
)
def test_each_heuristic_has_its_reason(prompt: str, answer: str, reason: str) -> None:
    drop = check_pair(prompt, answer, SOURCE, SETTINGS, asks_question=True)
    assert drop is not None and drop.reason == reason
    assert drop.prompt == prompt and drop.answer == answer


@pytest.mark.parametrize(
    "prompt",
    [
        "What does the passage say about the X200?",
        "What voltage is named in the text?",
        "According to the text, what voltage does it need?",
        "Based on the text above, how far from the wall is it installed?",
    ],
)
def test_prompts_that_need_the_passage_are_not_standalone(prompt: str) -> None:
    assert _reason(prompt, "At most 5 bar and 230 V, 30 cm from the wall.") == "not_standalone"


@pytest.mark.parametrize(
    "prompt",
    [
        "What slows the passage of water through the X200 filter?",
        "Which font is used in the text editor of the X200 panel?",
    ],
)
def test_prompts_about_other_passages_and_texts_are_kept(prompt: str) -> None:
    assert _reason(prompt, "The filter, cleaned every 200 hours.", grounded_threshold=0) is None


def test_the_heuristics_follow_their_settings() -> None:
    assert _reason("State the X200's pressure", "At most 5 bar.", asks=False) is None
    assert _reason("State the X200's pressure", "5 bar", require_question_mark=False) is None
    made_up = ("Who invented the X200?", "Ingrid Larsen in Copenhagen during 1987.")
    assert _reason(*made_up, grounded_threshold=0.0) is None
    no = ("What colour is the X200?", "I'm sorry, I cannot tell the X200 colour.")
    assert _reason(*no, drop_refusals=False, grounded_threshold=0.0) is None
    with pytest.raises(ValidationError, match="min_answer_chars must be at most"):
        CurationSettings(min_answer_chars=100, max_answer_chars=50)
    with pytest.raises(ValidationError):
        CurationSettings(near_duplicate_similarity=0.2)


def test_groundedness_is_the_share_of_content_words_in_the_source() -> None:
    assert groundedness("The pump delivers 5 bar.", SOURCE) == 1.0
    # stems: "installation" and "cleaning" match "Install" and "Clean"
    assert groundedness("Installation needs cleaning.", SOURCE) == pytest.approx(2 / 3)
    assert groundedness("Ingrid Larsen, 1987.", SOURCE) == 0.0
    assert groundedness("Yes, it is.", SOURCE) == 1.0  # nothing to check


def test_minhash_is_deterministic_and_seeded() -> None:
    text = "the pump delivers at most five bar of pressure when it runs"
    assert MinHash(seed=3).signature(text) == MinHash(seed=3).signature(text)
    assert MinHash(seed=3).signature(text) != MinHash(seed=4).signature(text)


def test_near_duplicates_are_found_in_order_and_deterministically() -> None:
    base = (
        "How far from the wall should the X200 pump be installed on a level floor? At least "
        "thirty centimetres from the wall, on a level floor, near a 230 V socket."
    )
    texts = [
        base,
        "How often should the filter of the X200 be cleaned? Every 200 hours of running.",
        base.replace("thirty", "30"),  # one word changed: nearly the same
        base,  # an exact repeat
        "What is the highest pressure of the X200? It delivers at most 5 bar.",
    ]
    found = near_duplicates(texts, 0.7, seed=1)
    assert found == [None, None, 0, 0, None]
    assert near_duplicates(texts, 0.7, seed=1) == found
    assert near_duplicates(texts, 1.0, seed=1) == [None, None, None, 0, None]
    assert near_duplicates([], 0.7) == []


def _judge_reply(body: dict[str, Any]) -> str:
    """Scores 9 when the answer's last word is in the reference (the chunk), else 2; an
    answer asking for it gets no score."""
    user = body["messages"][-1]["content"]
    sections = re.search(r"Reference answer:\n(.*)\n\nAnswer to grade:\n(.*)\Z", user, re.DOTALL)
    assert sections is not None
    reference, answer = sections.groups()
    if "unreadable" in answer:
        return "What a question!"
    last = answer.rstrip(".").split()[-1]
    score = 9 if last in reference else 2
    return f'{{"score": {score}, "reason": "checked"}}'


def test_the_judge_grades_each_pair_against_the_chunk() -> None:
    pairs = [
        ("How long between filter cleanings?", "Every 200 hours"),
        ("What does it weigh?", "It weighs 12 kg"),
        ("Anything else?", "unreadable"),
    ]
    spec = JudgeSpec(base_url="http://127.0.0.1:1/v1", model="judge")
    with LlmServer(reply=_judge_reply, api_key="jk") as server:
        spec = JudgeSpec(base_url=server.url, model="judge")
        judge = Judge(judge_spec(spec), "jk", delays=(0.0,))
        try:
            verdicts = judge_pairs(judge, pairs, SOURCE)
        finally:
            judge.close()
    assert [v.score if v else None for v in verdicts] == [9, 2, None]
    assert len(server.requests) == 3
    system = server.requests[0]["messages"][0]["content"]
    assert "source passage" in system  # the grounding rubric
    assert judge_spec(spec.model_copy(update={"rubric": "Mine."})).rubric == "Mine."


def test_a_judge_that_refuses_the_key_fails_clearly() -> None:
    with LlmServer(api_key="right") as server:
        judge = Judge(JudgeSpec(base_url=server.url, model="judge"), "wrong", delays=())
        with pytest.raises(JudgeFailed, match="refused the key"):
            judge_pairs(judge, [("A?", "b")], SOURCE)
        judge.close()
