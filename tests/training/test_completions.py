"""Preference and feedback records as prompt and answer ids, rendered as inference renders
them, cut at max length with the prompt's end kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tests.training.conftest import feedback, preferences
from tuneforge.data.conversation import message
from tuneforge.models.chat_template import render
from tuneforge.training.components.completions import encode_feedback, encode_pair
from tuneforge.training.evaluation import sample_prompts


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_model / "tokenizer.json"))


def test_a_pair_shares_its_prompt_and_joins_into_the_rendered_conversation(
    tokenizer: Tokenizer,
) -> None:
    record = preferences(1)[0]
    pair = encode_pair(record, tokenizer, 1024)
    assert not pair.cut and pair.chosen.prompt_ids == pair.rejected.prompt_ids
    for side, completion in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        whole = render([*record["prompt"], *record[side]])  # ends with `<end_of_turn>\n`
        ids = tokenizer.encode(whole, add_special_tokens=False).ids
        assert completion.prompt_ids + completion.answer_ids == ids[:-1]
        assert completion.answer_ids[-1] == tokenizer.token_to_id("<end_of_turn>")


def test_max_length_keeps_the_prompts_end_and_the_answers_beginning(
    tokenizer: Tokenizer,
) -> None:
    record = {
        "prompt": [message("user", "background " * 60 + "Which colour is number 3?")],
        "chosen": [message("assistant", "Number 3 is amber.")],
        "rejected": [message("assistant", "I would rather not say, " * 10)],
    }
    full = encode_pair(record, tokenizer, 4096)
    pair = encode_pair(record, tokenizer, 48)
    assert pair.cut
    for completion in (pair.chosen, pair.rejected):
        assert completion.tokens <= 48
    prompt = pair.chosen.prompt_ids
    assert prompt[0] == full.chosen.prompt_ids[0]  # <bos>
    assert prompt[1:] == full.chosen.prompt_ids[-(len(prompt) - 1) :]  # the question is kept
    assert len(prompt) >= 24  # at most half of max length goes to the answers' side
    assert pair.rejected.answer_ids == full.rejected.answer_ids[: 48 - len(prompt)]


def test_feedback_records_and_split_pairs(tokenizer: Tokenizer) -> None:
    good, bad = encode_feedback(preferences(1)[0], tokenizer, 1024)
    assert good.desirable and not bad.desirable
    assert good.completion.prompt_ids == bad.completion.prompt_ids
    (single,) = encode_feedback(feedback(2)[1], tokenizer, 1024)
    assert not single.desirable


def test_sample_prompts_come_from_preference_prompts_with_the_chosen_answer() -> None:
    (first, second) = sample_prompts([], preferences(2))
    assert first.prompt == "Which colour is number 0?" and first.reference == "Number 0 is red."
    assert second.messages == preferences(2)[1]["prompt"]
    undesirable = sample_prompts([], feedback(2))
    assert undesirable[0].reference == "Number 0 is red." and undesirable[1].reference is None


def test_sample_answers_are_the_models_own_greedy_continuation(tiny_model: Path) -> None:
    """Answered together (left-padded into one batch), prompts of different lengths get the
    answers each gets alone."""
    import torch

    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.components.tokenize import encode_prompt
    from tuneforge.training.evaluation import generate
    from tuneforge.training.runtime import Runtime

    tokenizer = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    model = load_causal_lm(tiny_model, torch.float32)
    samples = sample_prompts([], preferences(3))
    samples[1].messages[-1].update(message("user", "A much longer question, " * 8 + "in colour?"))
    samples[2].messages[-1].update(message("user", "Colour?"))
    answers = generate(model, tokenizer, samples, 6, Runtime("cpu", "fp32", False))
    assert len({len(encode_prompt(s.messages, tokenizer)) for s in samples}) == 3
    for sample, answer in zip(samples, answers, strict=True):
        ids = torch.tensor([encode_prompt(sample.messages, tokenizer)])
        with torch.no_grad():
            plain = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
        new = plain[0, ids.shape[1] :].tolist()
        expected = tokenizer.decode(new, skip_special_tokens=True).strip()
        assert answer["answer"] == expected and answer["prompt"] == sample.prompt
        assert answer["ended"] == (len(new) < 6)
