"""Gemma's function-calling format: declarations, calls and results rendered as FunctionGemma's
and Gemma 4's documentation write them, byte for byte like the Jinja template as transformers
renders it with `tools=`, and calls parsed back from generated text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.models import models_cache_dir
from tuneforge.models.chat_template import GEMMA_3, GEMMA_4, ChatFormat
from tuneforge.models.tokenizer import ensure_gemma4_tokenizer_dir, ensure_tokenizer_dir
from tuneforge.models.tool_format import (
    FUNCTION_GEMMA_MARKERS,
    GEMMA_4_MARKERS,
    CallSyntaxError,
    call_text,
    parse_calls,
    tools_of,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Gets the current weather in a given location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": 'The city and state, e.g. "San Francisco, CA" or "Tokyo, JP"',
                },
                "unit": {
                    "type": "string",
                    "description": "The unit to return the temperature in.",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": ["integer", "null"], "default": 5},
                "filters": {
                    "type": "object",
                    "properties": {"site": {"type": "string"}, "safe": {"type": "boolean"}},
                },
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["query"],
        },
    },
}
NO_PARAMETERS = {"type": "function", "function": {"name": "now", "description": "The time."}}
TOOLS = [WEATHER, SEARCH, NO_PARAMETERS]


def _call(name: str, arguments: dict[str, Any], as_text: bool = False) -> dict[str, Any]:
    args: Any = json.dumps(arguments) if as_text else arguments
    return {"type": "function", "function": {"name": name, "arguments": args}}


TOKYO = _call("get_current_weather", {"location": "Tokyo, Japan"})
CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "one call": [
        {"role": "user", "content": "Hey, what's the weather in Tokyo right now?"},
        {"role": "assistant", "content": None, "tool_calls": [TOKYO]},
        {"role": "tool", "name": "get_current_weather", "content": "15 degrees, sunny"},
        {"role": "assistant", "content": "It is sunny and 15 degrees in Tokyo."},
    ],
    "system, parallel calls, text before calls, two rounds": [
        {"role": "system", "content": "You are a model that can do function calling."},
        {"role": "user", "content": [{"type": "text", "text": " Weather and news? "}]},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                TOKYO,
                _call(
                    "search",
                    {
                        "query": 'news {today}, "quoted"',
                        "limit": 3,
                        "filters": {"site": "a.b", "safe": True},
                        "tags": ["x", "y"],
                        "type": "car",
                        "ratio": 0.25,
                        "none": None,
                    },
                ),
            ],
        },
        {"role": "tool", "name": "get_current_weather", "content": "15"},
        {"role": "tool", "name": "search", "content": [{"type": "text", "text": '{"n": 1}'}]},
        {"role": "assistant", "content": "", "tool_calls": [_call("now", {})]},
        {"role": "tool", "name": "now", "content": "noon"},
        {"role": "assistant", "content": "Sunny, 15; one article; it is noon."},
        {"role": "user", "content": "Thanks"},
    ],
    "waiting for a result": [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": None, "tool_calls": [_call("now", {})]},
    ],
    "after a result": [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": None, "tool_calls": [_call("now", {})]},
        {"role": "tool", "name": "now", "content": "noon"},
    ],
    "no call": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ],
}


def test_the_declaration_is_the_one_functiongemma_documents():
    messages = [
        {
            "role": "system",
            "content": "You are a model that can do function calling with the following functions",
        },
        {"role": "user", "content": "Hey, what's the weather in Tokyo right now?"},
    ]
    text = GEMMA_3.render(messages, tools=[WEATHER], add_generation_prompt=True)
    assert text == (
        "<bos><start_of_turn>developer\nYou are a model that can do function calling with the "
        "following functions<start_function_declaration>declaration:get_current_weather{"
        "description:<escape>Gets the current weather in a given location.<escape>,parameters:{"
        'properties:{location:{description:<escape>The city and state, e.g. "San Francisco, '
        'CA" or "Tokyo, JP"<escape>,type:<escape>STRING<escape>},unit:{description:<escape>'
        "The unit to return the temperature in.<escape>,enum:[<escape>celsius<escape>,<escape>"
        "fahrenheit<escape>],type:<escape>STRING<escape>}},required:[<escape>location<escape>],"
        "type:<escape>OBJECT<escape>}}<end_function_declaration><end_of_turn>\n"
        "<start_of_turn>user\nHey, what's the weather in Tokyo right now?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_call_result_and_answer_share_the_model_turn():
    text = GEMMA_3.render(CONVERSATIONS["one call"], tools=[WEATHER])
    assert text.endswith(
        "<start_of_turn>model\n<start_function_call>call:get_current_weather{location:<escape>"
        "Tokyo, Japan<escape>}<end_function_call><start_function_response>response:"
        "get_current_weather{value:<escape>15 degrees, sunny<escape>}<end_function_response>"
        "It is sunny and 15 degrees in Tokyo.<end_of_turn>\n"
    )
    gemma4 = GEMMA_4.render(CONVERSATIONS["one call"], tools=[WEATHER])
    assert gemma4.startswith("<bos><|turn>system\n<|tool>declaration:get_current_weather{")
    assert (
        '<|turn>model\n<|tool_call>call:get_current_weather{location:<|"|>Tokyo, Japan<|"|>}'
        '<tool_call|><|tool_response>response:get_current_weather{value:<|"|>15 degrees, sunny'
        '<|"|>}<tool_response|>It is sunny and 15 degrees in Tokyo.<turn|>\n'
    ) in gemma4


def test_a_conversation_without_tools_renders_as_before():
    messages = CONVERSATIONS["no call"]
    assert GEMMA_3.render(messages, tools=None) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
    )


def test_arguments_as_json_text_render_like_objects():
    as_text = [
        {**m, "tool_calls": [_call("get_current_weather", {"location": "Tokyo, Japan"}, True)]}
        if m.get("tool_calls")
        else m
        for m in CONVERSATIONS["one call"]
    ]
    for chat in (GEMMA_3, GEMMA_4):
        assert chat.render(as_text, tools=TOOLS) == chat.render(
            CONVERSATIONS["one call"], tools=TOOLS
        )


@pytest.mark.parametrize("chat", [GEMMA_3, GEMMA_4], ids=lambda c: c.name)
def test_generation_prompt_waits_for_results_and_continues_after_them(chat: ChatFormat):
    waiting = chat.render(CONVERSATIONS["waiting for a result"], tools=TOOLS)
    assert waiting.endswith(chat.tool_markers.response[0])
    assert (
        chat.render(CONVERSATIONS["waiting for a result"], tools=TOOLS, add_generation_prompt=True)
        == waiting
    )
    after = chat.render(CONVERSATIONS["after a result"], tools=TOOLS, add_generation_prompt=True)
    assert after.endswith(
        f"response:now{{value:{chat.tool_markers.string}noon"
        f"{chat.tool_markers.string}}}{chat.tool_markers.response[1]}"
    )


@pytest.mark.parametrize("chat", [GEMMA_3, GEMMA_4], ids=lambda c: c.name)
def test_prompt_and_answer_of_a_calling_answer(chat: ChatFormat):
    messages = CONVERSATIONS["waiting for a result"]
    prompt, answer = chat.prompt_and_answer(messages, tools=TOOLS)
    assert prompt.endswith(chat.generation_prompt)
    assert (
        answer
        == f"{call_text(messages[1]['tool_calls'][0], chat.tool_markers)}"
        + (chat.tool_markers.response[0])
    )


BAD = [
    (
        [{"role": "user", "content": "a"}, {"role": "tool", "name": "now", "content": "x"}],
        "no assistant message with tool calls comes before it",
    ),
    (
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": None, "tool_calls": [_call("now", {})]},
            {"role": "user", "content": "b"},
        ],
        "no tool result follows it",
    ),
    (
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": None, "tool_calls": [_call("now", {})]},
            {"role": "tool", "content": "x"},
        ],
        "has no tool name",
    ),
]


@pytest.mark.parametrize(("messages", "error"), BAD)
def test_misplaced_results_are_refused(messages: list[Any], error: str):
    with pytest.raises(ValueError, match=error):
        GEMMA_3.render(messages, tools=TOOLS)


@pytest.fixture(scope="module")
def hf_tokenizers() -> dict[str, Any]:
    from transformers import AutoTokenizer

    cache = models_cache_dir()
    return {
        GEMMA_3.name: AutoTokenizer.from_pretrained(ensure_tokenizer_dir(cache)),
        GEMMA_4.name: AutoTokenizer.from_pretrained(ensure_gemma4_tokenizer_dir(cache)),
    }


@pytest.mark.parametrize("chat", [GEMMA_3, GEMMA_4], ids=lambda c: c.name)
def test_transformers_renders_tools_byte_for_byte_like_render(
    hf_tokenizers: dict[str, Any], chat: ChatFormat
):
    hf = hf_tokenizers[chat.name]
    for name, messages in CONVERSATIONS.items():
        for tools in (TOOLS, None):
            for generation_prompt in (False, True):
                jinja = hf.apply_chat_template(
                    messages,
                    tools=tools,
                    chat_template=chat.jinja,
                    tokenize=False,
                    add_generation_prompt=generation_prompt,
                )
                ours = chat.render(messages, tools=tools, add_generation_prompt=generation_prompt)
                assert jinja == ours, name


@pytest.mark.parametrize(("messages", "error"), BAD[:2])
def test_transformers_refuses_the_same_misplaced_results(
    hf_tokenizers: dict[str, Any], messages: list[Any], error: str
):
    from jinja2 import TemplateError

    with pytest.raises(TemplateError):
        hf_tokenizers[GEMMA_3.name].apply_chat_template(messages, tools=TOOLS, tokenize=False)


VALUES: list[dict[str, Any]] = [
    {},
    {"location": "Tokyo, Japan"},
    {"query": 'a {b}, [c]: "d"', "n": 3, "x": -1.5e-3, "ok": False, "none": None},
    {"nested": {"list": [1, "two", {"three": [True]}], "empty": {}, "e": []}},
    {"text": "line one\nline two\t", "unicode": "日本語 🎉"},
]


@pytest.mark.parametrize("markers", [FUNCTION_GEMMA_MARKERS, GEMMA_4_MARKERS])
@pytest.mark.parametrize("arguments", VALUES)
def test_calls_parse_back_to_their_arguments(markers: Any, arguments: dict[str, Any]):
    calls = [_call("f_1", arguments), _call("g-2", {"a": 1})]
    text = "Thinking aloud. " + "".join(call_text(c, markers) for c in calls)
    content, parsed = parse_calls(text, markers)
    assert content == "Thinking aloud. "
    assert parsed == [
        {"name": "f_1", "arguments": arguments},
        {"name": "g-2", "arguments": {"a": 1}},
    ]


@pytest.mark.parametrize(
    "text",
    [
        "<start_function_call>call:f{a:<escape>x<escape>}",  # not closed
        "<start_function_call>call:f{a:<escape>x}<end_function_call>",  # string not closed
        "<start_function_call>f{a:1}<end_function_call>",  # no call:
        "<start_function_call>call:f{a:1<end_function_call>",  # object not closed
        "<start_function_call>call:f{a:[1,2}<end_function_call>",  # list not closed
    ],
)
def test_malformed_calls_are_reported(text: str):
    with pytest.raises(CallSyntaxError):
        parse_calls(text, FUNCTION_GEMMA_MARKERS)


def test_text_without_calls_is_all_content():
    assert parse_calls("Just words.", FUNCTION_GEMMA_MARKERS) == ("Just words.", [])


def test_tools_are_read_from_records():
    assert tools_of(None) is None and tools_of("") is None and tools_of("[]") is None
    assert tools_of(json.dumps([WEATHER])) == [WEATHER]
    for bad in ("{", "{}", json.dumps([{"name": "unwrapped"}])):
        with pytest.raises(ValueError):
            tools_of(bad)
