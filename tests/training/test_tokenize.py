"""Records become the tokens inference sees, with loss exactly on the answers."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from tokenizers import Tokenizer

from tests.models import models_cache_dir
from tuneforge.data.conversation import message
from tuneforge.models.chat_template import GEMMA_4, format_of_tokenizer, render
from tuneforge.models.tokenizer import ensure_gemma4_tokenizer_dir, gemma_tokenizer
from tuneforge.training.components.tokenize import (
    IGNORE_INDEX,
    Example,
    encode_prompt,
    encode_record,
)

CONVERSATIONS: list[list[Any]] = [
    [message("user", "Hi"), message("assistant", "Hello there!")],
    [
        message("system", "  You answer in French.  "),
        message("user", "What is 12 + 30?\n"),
        message("assistant", "  42, exactement.  "),
        message("user", "Et 7 \u00d7 6 ?"),
        message("assistant", "\n42 aussi.\n\nVoilà."),
    ],
    [
        message("user", "Ünïcödé: 日本語のテキスト, emoji 🎉🚀, Ελληνικά"),
        message("assistant", "Réponse: 東京 🗼 — ça va?"),
        message("user", " trailing spaces   "),
        message("assistant", "3.14159 2.71828 1e-10 0x1F -17 1,000,000"),
    ],
    [
        message("user", "Code please"),
        message("assistant", "```python\ndef f(x):\n    return x  *  2\n```\n\t tab"),
    ],
    [message("user", "Empty answer next"), message("assistant", "   ")],
    [  # a string content, and text split over parts
        {"role": "user", "content": "plain string content"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "first "}, {"type": "text", "text": " second"}],
        },
    ],
]

# pieces of random texts: whitespace runs, numbers, unicode, markup, a literal special token
NOISE = [
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "a",
    "the",
    "Word",
    "1",
    "42",
    "3.5",
    "-",
    ".",
    "!",
    "日本",
    "é",
    "🎉",
    "<",
    ">",
    "</",
    "▁",
    "model",
    "\r\n",
    "```",
]
NOISE.append("<end_of_turn>")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return gemma_tokenizer(models_cache_dir())


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def _loss_spans(example: Example) -> list[list[int]]:
    """The runs of consecutive tokens that carry loss."""
    spans: list[list[int]] = []
    previous = IGNORE_INDEX
    for label in example.labels:
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                spans.append([])
            spans[-1].append(label)
        previous = label
    return spans


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_segments_tokenise_like_the_whole_rendered_text(
    tokenizer: Tokenizer, messages: list[Any]
) -> None:
    whole = _ids(tokenizer, render(messages))
    assert whole[0] == tokenizer.token_to_id("<bos>") and whole[1] != whole[0]
    for assistant_only in (True, False):
        example = encode_record({"messages": messages}, tokenizer, 10_000, assistant_only)
        assert example is not None
        assert example.input_ids == whole


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(NOISE) for _ in range(rng.randint(0, 30)))


def test_segments_tokenise_like_the_whole_text_on_random_conversations(
    tokenizer: Tokenizer,
) -> None:
    rng = random.Random(7)
    for _ in range(200):
        turns = rng.randint(1, 4)
        messages = [message("system", _random_text(rng))] if rng.random() < 0.5 else []
        for _ in range(turns):
            messages += [message("user", _random_text(rng))]
            messages += [message("assistant", _random_text(rng))]
        example = encode_record({"messages": messages}, tokenizer, 10_000, assistant_only=True)
        assert example is not None
        assert example.input_ids == _ids(tokenizer, render(messages)), messages


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_loss_is_on_each_answer_and_its_end_of_turn(
    tokenizer: Tokenizer, messages: list[Any]
) -> None:
    example = encode_record({"messages": messages}, tokenizer, 10_000, assistant_only=True)
    assert example is not None
    end_of_turn = tokenizer.token_to_id("<end_of_turn>")
    answers = [m for m in messages if m["role"] == "assistant"]
    spans = _loss_spans(example)
    assert len(spans) == len(answers)
    for span, answer in zip(spans, answers, strict=True):
        content = answer["content"]
        text = (
            content.strip()
            if isinstance(content, str)
            else "".join(p["text"].strip() for p in content)
        )
        assert span == [*_ids(tokenizer, text), end_of_turn]
    # where a loss token is, the label is that token; the newline after <end_of_turn> has none
    for index, label in enumerate(example.labels):
        assert label in (IGNORE_INDEX, example.input_ids[index])
        if example.input_ids[index - 1] == end_of_turn:
            assert label == IGNORE_INDEX
    assert example.input_ids[-1] == tokenizer.token_to_id("\n")


def test_without_assistant_only_every_token_but_the_first_carries_loss(
    tokenizer: Tokenizer,
) -> None:
    example = encode_record({"messages": CONVERSATIONS[1]}, tokenizer, 10_000, False)
    assert example is not None
    assert example.labels == [IGNORE_INDEX, *example.input_ids[1:]]


def test_a_preference_record_trains_on_the_prompt_and_the_chosen_answer(
    tokenizer: Tokenizer,
) -> None:
    prompt = [message("system", "Be brief."), message("user", "Capital of France?")]
    record = {
        "prompt": prompt,
        "chosen": [message("assistant", "Paris.")],
        "rejected": [message("assistant", "Lyon, I think.")],
    }
    example = encode_record(record, tokenizer, 10_000, assistant_only=True)
    expected = encode_record(
        {"messages": [*prompt, message("assistant", "Paris.")]}, tokenizer, 10_000, True
    )
    assert example == expected


def test_a_text_record_is_bos_text_eos_with_loss_on_everything(tokenizer: Tokenizer) -> None:
    text = "  Once upon a time, 1234 dragons 🐉 lived here.\n\nThe end. "
    for assistant_only in (True, False):
        example = encode_record({"text": text}, tokenizer, 10_000, assistant_only)
        assert example is not None
        assert example.input_ids == _ids(tokenizer, f"<bos>{text}<eos>")
        assert example.labels == [IGNORE_INDEX, *example.input_ids[1:]]


def test_truncation_keeps_the_start_and_drops_records_without_loss(tokenizer: Tokenizer) -> None:
    messages = [message("user", "word " * 50), message("assistant", "Short answer.")]
    full = encode_record({"messages": messages}, tokenizer, 10_000, assistant_only=True)
    assert full is not None
    prompt_length = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    cut = encode_record({"messages": messages}, tokenizer, prompt_length + 2, True)
    assert cut is not None
    assert cut.input_ids == full.input_ids[: prompt_length + 2]
    assert sum(label != IGNORE_INDEX for label in cut.labels) == 2
    assert encode_record({"messages": messages}, tokenizer, prompt_length, True) is None
    # without assistant_only the prompt itself is trained on, so the record survives
    assert encode_record({"messages": messages}, tokenizer, prompt_length, False) is not None


def test_images_and_wrong_shapes_are_refused_clearly(tokenizer: Tokenizer) -> None:
    with_image = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
        message("assistant", "A cat."),
    ]
    with pytest.raises(ValueError, match="the model is text-only"):
        encode_record({"messages": with_image}, tokenizer, 100, True)
    with pytest.raises(ValueError, match="the model is text-only"):
        encode_prompt(with_image[:1], tokenizer)
    with pytest.raises(ValueError, match="no answer"):
        encode_record({"prompt": [message("user", "Hi")]}, tokenizer, 100, True)
    with pytest.raises(ValueError, match="needs `messages`"):
        encode_record({"question": "Hi"}, tokenizer, 100, True)
    out_of_order = [message("user", "Hi"), message("user", "Hi?"), message("assistant", "Hi.")]
    with pytest.raises(ValueError, match="role 'user' where Gemma expects 'assistant'"):
        encode_record({"messages": out_of_order}, tokenizer, 100, True)
    with pytest.raises(ValueError, match="no user message"):
        encode_record({"messages": [message("assistant", "Hi")]}, tokenizer, 100, True)


def test_the_prompt_ends_with_the_generation_prompt(tokenizer: Tokenizer) -> None:
    messages = CONVERSATIONS[1][:-1]
    ids = encode_prompt(messages, tokenizer)
    assert ids == _ids(tokenizer, render(messages, add_generation_prompt=True))
    assert ids[-3:] == _ids(tokenizer, "<start_of_turn>model\n")
    # the prompt is exactly what training saw before the answer it learned
    example = encode_record({"messages": CONVERSATIONS[1]}, tokenizer, 10_000, True)
    assert example is not None
    assert example.input_ids[: len(ids)] == ids
    assert example.labels[len(ids) - 1] == IGNORE_INDEX
    assert example.labels[len(ids)] != IGNORE_INDEX
    with pytest.raises(ValueError, match="must end with a user message"):
        encode_prompt(CONVERSATIONS[0], tokenizer)


# Gemma 4: the tokenizer speaks Gemma 4's format (its control tokens), and records render in it.


@pytest.fixture(scope="module")
def gemma4_tokenizer() -> Tokenizer:
    return Tokenizer.from_file(
        str(ensure_gemma4_tokenizer_dir(models_cache_dir()) / "tokenizer.json")
    )


@pytest.fixture(scope="module")
def gemma4_hf_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_gemma4_tokenizer_dir(models_cache_dir()))


def _transformers_ids(hf_tokenizer: Any, messages: list[Any], generation_prompt: bool) -> list[int]:
    ids = hf_tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=False
    )
    return list(ids)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_gemma4_records_are_the_prompt_inference_sends_then_the_answer(
    gemma4_tokenizer: Tokenizer, gemma4_hf_tokenizer: Any, messages: list[Any]
) -> None:
    assert format_of_tokenizer(gemma4_tokenizer) is GEMMA_4
    prompt = _transformers_ids(gemma4_hf_tokenizer, messages[:-1], generation_prompt=True)
    answer = _ids(gemma4_tokenizer, GEMMA_4.render_answer(messages[-1]["content"]))
    example = encode_record({"messages": messages}, gemma4_tokenizer, 10_000, True)
    assert example is not None
    assert example.input_ids == prompt + answer
    assert encode_prompt(messages[:-1], gemma4_tokenizer) == prompt
    assert prompt[-4:] == [
        gemma4_tokenizer.token_to_id("<|channel>"),
        *_ids(gemma4_tokenizer, "thought\n"),
        gemma4_tokenizer.token_to_id("<channel|>"),
    ]
    # every answer and its <turn|> carry loss, nothing else does
    turn_end = gemma4_tokenizer.token_to_id("<turn|>")
    answers = [m for m in messages if m["role"] == "assistant"]
    spans = _loss_spans(example)
    assert len(spans) == len(answers)
    for span, answer_message in zip(spans, answers, strict=True):
        text = GEMMA_4.render_content(answer_message["content"], answer=True)
        assert span == [*_ids(gemma4_tokenizer, text), turn_end]
    assert example.input_ids[-2:] == [turn_end, gemma4_tokenizer.token_to_id("\n")]


def test_gemma4_history_is_rendered_as_transformers_renders_it(
    gemma4_tokenizer: Tokenizer, gemma4_hf_tokenizer: Any
) -> None:
    rng = random.Random(11)
    for _ in range(100):
        messages = [message("system", _random_text(rng))] if rng.random() < 0.5 else []
        for _ in range(rng.randint(1, 3)):
            messages += [
                message("user", _random_text(rng)),
                message("assistant", _random_text(rng)),
            ]
        example = encode_record({"messages": messages}, gemma4_tokenizer, 10_000, True)
        assert example is not None
        prompt = _transformers_ids(gemma4_hf_tokenizer, messages[:-1], generation_prompt=True)
        assert example.input_ids[: len(prompt)] == prompt, messages
        # a conversation ending in a user turn renders whole, as the template does
        whole = _transformers_ids(gemma4_hf_tokenizer, messages[:-1], generation_prompt=False)
        ongoing = encode_record({"messages": messages[:-1]}, gemma4_tokenizer, 10_000, False)
        assert ongoing is not None and ongoing.input_ids == whole


TOOL_CALL = {
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}
TOOLS_JSON = (
    '[{"type": "function", "function": {"name": "get_weather", "description": "Weather now.", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]'
)
TOOL_CONVERSATION: list[Any] = [
    message("user", "Weather in Oslo?"),
    {"role": "assistant", "content": [], "tool_calls": [TOOL_CALL]},
    {"role": "tool", "name": "get_weather", "content": [{"type": "text", "text": "-3, snow"}]},
    message("assistant", "Snowing, -3."),
]


@pytest.mark.parametrize("gemma4", [False, True], ids=["gemma-3", "gemma-4"])
def test_tool_calls_carry_loss_and_tool_results_do_not(
    tokenizer: Tokenizer, gemma4_tokenizer: Tokenizer, gemma4: bool
) -> None:
    tok = gemma4_tokenizer if gemma4 else tokenizer
    chat = format_of_tokenizer(tok)
    record = {"messages": TOOL_CONVERSATION, "tools": TOOLS_JSON}
    example = encode_record(record, tok, 10_000, assistant_only=True)
    assert example is not None
    tools = json.loads(TOOLS_JSON)
    prompt, answer = chat.prompt_and_answer(TOOL_CONVERSATION, tools=tools)
    assert example.input_ids == _ids(tok, prompt + answer)
    markers = chat.tool_markers
    call = f"{markers.call[0]}call:get_weather{{city:{markers.string}Oslo{markers.string}}}"
    spans = [tok.decode(span, skip_special_tokens=False) for span in _loss_spans(example)]
    assert spans == [
        f"{call}{markers.call[1]}{markers.response[0]}",
        f"Snowing, -3.{chat.end_of_turn}",
    ]
    assert "-3, snow" not in "".join(spans)  # the tool's result is read, never learnt
