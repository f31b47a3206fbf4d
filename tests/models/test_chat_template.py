"""Gemma's chat template: exact renderings, the prompt/answer split, errors, and byte-for-byte
agreement with the Jinja template as transformers renders it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.models import models_cache_dir
from tuneforge.data.conversation import message
from tuneforge.models.chat_template import (
    GEMMA_3,
    GEMMA_4,
    GEMMA_CHAT_TEMPLATE,
    chat_format,
    format_of,
    prompt_and_answer,
    render,
)
from tuneforge.models.tokenizer import ensure_tokenizer_dir

SYSTEM = message("system", "You are terse.")
IMAGE_QUESTION = {
    "role": "user",
    "content": [{"type": "image"}, {"type": "text", "text": " What is in it? "}, {"type": "image"}],
}
CONVERSATIONS: dict[str, list[Any]] = {
    "one turn": [message("user", "Hi"), message("assistant", "Hello!")],
    "system": [SYSTEM, message("user", "Hi"), message("assistant", "Hello.")],
    "multi-turn": [
        message("user", "2+2?"),
        message("assistant", "4"),
        message("user", "And times 3?"),
        message("assistant", "12"),
    ],
    "images": [SYSTEM, IMAGE_QUESTION, message("assistant", "Two cats.")],
    "string content": [
        {"role": "user", "content": "  padded\n"},
        {"role": "assistant", "content": "Line one\nline two"},
    ],
    "open question": [SYSTEM, message("user", "Why?")],
}


def test_one_turn():
    assert render(CONVERSATIONS["one turn"]) == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
    )


def test_system_prompt_is_folded_into_the_first_user_turn():
    assert render(CONVERSATIONS["system"], bos=False) == (
        "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
    )


def test_images_and_stripped_text():
    assert render([SYSTEM, IMAGE_QUESTION], add_generation_prompt=True) == (
        "<bos><start_of_turn>user\nYou are terse.\n\n"
        "<start_of_image>What is in it?<start_of_image><end_of_turn>\n<start_of_turn>model\n"
    )
    assert render(CONVERSATIONS["string content"]) == (
        "<bos><start_of_turn>user\npadded<end_of_turn>\n"
        "<start_of_turn>model\nLine one\nline two<end_of_turn>\n"
    )


def test_prompt_and_answer_split_the_rendering():
    conversation = CONVERSATIONS["multi-turn"]
    prompt, answer = prompt_and_answer(conversation)
    assert prompt == (
        "<bos><start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n"
        "<start_of_turn>user\nAnd times 3?<end_of_turn>\n<start_of_turn>model\n"
    )
    assert answer == "12<end_of_turn>\n"
    assert prompt + answer == render(conversation)


BAD_CONVERSATIONS = [
    ([message("user", "a"), message("user", "b")], "Message 2 has role 'user'"),
    ([message("assistant", "a")], "Message 1 has role 'assistant'"),
    ([SYSTEM, message("assistant", "a")], "Message 2 has role 'assistant'"),
    ([message("user", "a"), SYSTEM], "Message 2 has role 'system'"),
    ([], "no user message"),
    ([SYSTEM], "no user message"),
    ([{"role": "user", "content": [{"type": "audio"}]}], "Unknown content part type"),
]


@pytest.mark.parametrize(("messages", "error"), BAD_CONVERSATIONS)
def test_out_of_order_conversations_are_refused(messages: list[Any], error: str):
    with pytest.raises(ValueError, match=error):
        render(messages)


def test_an_answer_needs_a_final_assistant_turn():
    with pytest.raises(ValueError, match="must end with an assistant message"):
        prompt_and_answer(CONVERSATIONS["open question"])


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_tokenizer_dir(models_cache_dir()))


def test_saved_tokenizer_carries_the_template(hf_tokenizer: Any):
    assert hf_tokenizer.chat_template == GEMMA_CHAT_TEMPLATE
    assert hf_tokenizer.bos_token == "<bos>"


@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_jinja_renders_byte_for_byte_like_render(
    hf_tokenizer: Any, name: str, generation_prompt: bool
):
    conversation = CONVERSATIONS[name]
    jinja = hf_tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=generation_prompt
    )
    assert jinja == render(conversation, add_generation_prompt=generation_prompt)


@pytest.mark.parametrize(("messages", "error"), BAD_CONVERSATIONS)
def test_jinja_refuses_the_same_conversations(hf_tokenizer: Any, messages: list[Any], error: str):
    from jinja2 import TemplateError

    # transformers itself refuses an empty list before the template runs.
    with pytest.raises(ValueError if not messages else TemplateError):
        hf_tokenizer.apply_chat_template(messages, tokenize=False)


# Gemma 4's format: a real system turn, `<|turn>`/`<turn|>`, images as `\n\n<|image|>\n\n`, the
# empty thought channel in the generation prompt, thinking stripped from history answers.


def test_gemma4_one_turn_and_system_turn():
    assert GEMMA_4.render(CONVERSATIONS["one turn"]) == (
        "<bos><|turn>user\nHi<turn|>\n<|turn>model\nHello!<turn|>\n"
    )
    assert GEMMA_4.render(CONVERSATIONS["system"], bos=False) == (
        "<|turn>system\nYou are terse.<turn|>\n"
        "<|turn>user\nHi<turn|>\n<|turn>model\nHello.<turn|>\n"
    )


def test_gemma4_images_and_generation_prompt():
    assert GEMMA_4.render([SYSTEM, IMAGE_QUESTION], add_generation_prompt=True) == (
        "<bos><|turn>system\nYou are terse.<turn|>\n<|turn>user\n"
        "\n\n<|image|>\n\nWhat is in it?\n\n<|image|>\n\n<turn|>\n"
        "<|turn>model\n<|channel>thought\n<channel|>"
    )


def test_gemma4_history_answers_lose_their_thinking():
    conversation = [
        message("user", "2+2?"),
        message("assistant", "<|channel>thought\nadd them<channel|> 4 "),
        message("user", "Sure?"),
    ]
    assert GEMMA_4.render(conversation, add_generation_prompt=True) == (
        "<bos><|turn>user\n2+2?<turn|>\n<|turn>model\n4<turn|>\n<|turn>user\nSure?<turn|>\n"
        "<|turn>model\n<|channel>thought\n<channel|>"
    )


def test_gemma4_answer_follows_the_generation_prompt():
    conversation = CONVERSATIONS["multi-turn"]
    prompt, answer = GEMMA_4.prompt_and_answer(conversation)
    assert prompt == GEMMA_4.render(conversation[:-1], add_generation_prompt=True)
    assert prompt.endswith(
        "<|turn>user\nAnd times 3?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    )
    assert answer == "12<turn|>\n"


def test_formats_by_name_and_by_model():
    assert chat_format("gemma-4") is GEMMA_4
    assert chat_format(None) is GEMMA_3
    assert format_of({"model_type": "gemma4_text"}) is GEMMA_4
    assert format_of("google/gemma-4-E2B-it") is GEMMA_4
    assert format_of("google/gemma-3-1b-it") is GEMMA_3
    assert GEMMA_4.stop_tokens == ("<turn|>", "<eos>")
    with pytest.raises(ValueError, match="Unknown chat format"):
        chat_format("llama-3")


@pytest.mark.parametrize(("messages", "error"), BAD_CONVERSATIONS)
def test_gemma4_refuses_the_same_conversations(messages: list[Any], error: str):
    with pytest.raises(ValueError, match=error):
        GEMMA_4.render(messages)


GEMMA4_CONVERSATIONS = {
    **CONVERSATIONS,
    "thinking": [
        message("user", "Q"),
        message("assistant", " a<|channel>x<channel|>b "),
        message("user", "again"),
        {"role": "assistant", "content": [{"type": "text", "text": "<|channel>t<channel|>c"}]},
    ],
}


@pytest.mark.parametrize("name", GEMMA4_CONVERSATIONS)
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_gemma4_jinja_renders_byte_for_byte_like_render(
    hf_tokenizer: Any, name: str, generation_prompt: bool
):
    conversation = GEMMA4_CONVERSATIONS[name]
    jinja = hf_tokenizer.apply_chat_template(
        conversation,
        chat_template=GEMMA_4.jinja,
        tokenize=False,
        add_generation_prompt=generation_prompt,
    )
    assert jinja == GEMMA_4.render(conversation, add_generation_prompt=generation_prompt)


@pytest.mark.parametrize(("messages", "error"), BAD_CONVERSATIONS[1:])
def test_gemma4_jinja_refuses_the_same_conversations(
    hf_tokenizer: Any, messages: list[Any], error: str
):
    from jinja2 import TemplateError

    with pytest.raises(ValueError if not messages else TemplateError):
        hf_tokenizer.apply_chat_template(messages, chat_template=GEMMA_4.jinja, tokenize=False)
