"""Tool-calling conversations: a ShareGPT function-calling set in the glaive-toolcall layout and
an OpenAI `tool_calls` set are detected, mapped and processed with no input from JSON, JSON Lines
and Parquet files through the path a dataset job takes; every tool problem is caught."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.models import models_cache_dir
from tuneforge.data.config import ProcessingConfig
from tuneforge.data.conversation import check_order
from tuneforge.data.formats import guess_mapping
from tuneforge.data.mapping import MappingSpec, RowMapper
from tuneforge.data.process import records, rendered_texts
from tuneforge.data.readers import read_table
from tuneforge.data.stats import compute_stats
from tuneforge.data.stored import process_raw, processed_records, store_raw
from tuneforge.data.validation import DESCRIPTIONS, duplicate_keys
from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

# Bare `{name, description, parameters}` definitions, as ShareGPT function-calling sets hold them.
TOOLS: dict[str, dict[str, Any]] = {
    "get_weather": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
    "convert_currency": {
        "name": "convert_currency",
        "description": "Convert an amount from one currency to another",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "from_currency": {"type": "string"},
                "to_currency": {"type": "string"},
            },
            "required": ["amount", "from_currency", "to_currency"],
        },
    },
    "search_recipes": {
        "name": "search_recipes",
        "description": "Search recipes by ingredients",
        "parameters": {
            "type": "object",
            "properties": {"ingredients": {"type": "array", "items": {"type": "string"}}},
            "required": ["ingredients"],
        },
    },
    "get_stock_price": {
        "name": "get_stock_price",
        "description": "Get the current price of a stock",
        "parameters": {
            "type": "object",
            "properties": {"symbol": {"type": "string"}},
            "required": ["symbol"],
        },
    },
}
CITIES = ["Paris", "Lyon", "Oslo", "Lima", "Kyoto", "Cairo", "Quito", "Perth"]
FRUITS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "mango"]


def _arguments(name: str, i: int) -> dict[str, Any]:
    return {
        "get_weather": {"city": CITIES[i % 8], "unit": "celsius"},
        "convert_currency": {"amount": 10 + i, "from_currency": "EUR", "to_currency": "USD"},
        "search_recipes": {"ingredients": [FRUITS[i % 8], FRUITS[(i + 3) % 8]]},
        "get_stock_price": {"symbol": f"S{i}"},
    }[name]


def _call(name: str, i: int) -> dict[str, Any]:
    return {"name": name, "arguments": _arguments(name, i)}


def _result(name: str, i: int) -> str:
    return json.dumps({"tool": name, "value": i * 7 % 101})


def glaive_rows(count: int = 300, calls: int = 170, seed: int = 3) -> list[dict[str, Any]]:
    """Rows in the glaive-toolcall layout: `conversations` of from/value turns (human,
    function_call, observation, gpt) and `tools`, JSON text of bare definitions. The first
    `calls` rows call tools (one call, two calls in one turn or in two turns, several rounds,
    a gpt text before the call); the others are plain chats, with or without tools."""
    rng = random.Random(seed)
    names = list(TOOLS)
    rows = []
    for i in range(count):
        offered = rng.sample(names, 2)
        turns: list[dict[str, str]] = [{"from": "human", "value": f"Question {i}: can you help?"}]
        if i < calls:
            first, second = offered
            shape = i % 6
            if shape in (0, 1, 2):  # human -> function_call -> observation -> gpt
                turns += [
                    {"from": "function_call", "value": json.dumps(_call(first, i))},
                    {"from": "observation", "value": _result(first, i)},
                ]
            elif shape == 3:  # two calls in one turn, two results
                both = [_call(first, i), _call(second, i)]
                turns += [
                    {"from": "function_call", "value": json.dumps(both)},
                    {"from": "observation", "value": _result(first, i)},
                    {"from": "observation", "value": _result(second, i)},
                ]
            elif shape == 4:  # two rounds: a call, its result, another call, its result
                turns += [
                    {"from": "function_call", "value": json.dumps(_call(first, i))},
                    {"from": "observation", "value": _result(first, i)},
                    {"from": "function_call", "value": json.dumps(_call(second, i))},
                    {"from": "observation", "value": _result(second, i)},
                ]
            else:  # the assistant says something, then calls two tools in two turns in a row
                turns += [
                    {"from": "gpt", "value": f"Let me look that up ({i})."},
                    {"from": "function_call", "value": json.dumps(_call(first, i))},
                    {"from": "function_call", "value": json.dumps(_call(second, i))},
                    {"from": "observation", "value": _result(first, i)},
                    {"from": "observation", "value": _result(second, i)},
                ]
            turns.append({"from": "gpt", "value": f"Here is what I found for question {i}."})
            tools = [TOOLS[name] for name in offered]
        else:
            turns.append({"from": "gpt", "value": f"Sure, here is answer number {i}."})
            if i % 3 == 0:
                turns += [
                    {"from": "human", "value": f"And a follow-up {i}?"},
                    {"from": "gpt", "value": f"Follow-up answer {i}."},
                ]
            tools = [TOOLS[name] for name in offered] if i % 2 else []
        rows.append({"conversations": turns, "tools": json.dumps(tools)})
    return rows


def openai_rows(count: int = 300, calls: int = 170) -> list[dict[str, Any]]:
    """Rows in the OpenAI layout: `messages` with assistant `tool_calls` (arguments as JSON
    text), `tool` results with `tool_call_id`, some legacy `function_call`/`function` turns,
    and `tools` as a list of wrapped definitions."""
    rows = []
    names = list(TOOLS)
    for i in range(count):
        first, second = names[i % 4], names[(i + 1) % 4]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": f"Request {i}"},
        ]
        if i < calls and i % 5 == 4:  # legacy function calling
            messages += [
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {
                        "name": first,
                        "arguments": json.dumps(_arguments(first, i)),
                    },
                },
                {"role": "function", "name": first, "content": _result(first, i)},
            ]
        elif i < calls:
            calls_made = [
                {
                    "id": f"call_{i}_{n}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(_arguments(name, i))},
                }
                for n, name in enumerate([first, second] if i % 2 else [first])
            ]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls_made})
            for call in reversed(calls_made):  # results out of order: matched by their ids
                name = call["function"]["name"]
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": _result(name, i)}
                )
        messages.append({"role": "assistant", "content": f"Done with request {i}."})
        tools = [wrapped(name) for name in (first, second)]
        rows.append({"messages": messages, "tools": tools})
    return rows


def write(rows: list[dict[str, Any]], path: Path) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def processed(path: Path, settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The file uploaded and processed as the dataset jobs do it, with the detected mapping:
    the processed record's fields and every processed row (read back from the store)."""
    store = ArtifactStore(settings.resolved_storage_url)
    result = read_table(path, path.name)
    raw = store_raw(store, "u/datasets/raw", {"train": result.table}, result.warnings)
    assert raw["format"] is not None, raw["warnings"]
    config = ProcessingConfig(mapping=MappingSpec.model_validate(raw["mapping"]))
    fields = process_raw(store, settings, ("u/datasets/raw", raw["splits"]), "u/ds/p", config)
    rows = [
        row
        for split in fields.get("splits", {})
        for row in processed_records(store, "u/ds/p", fields["splits"], split)
    ]
    return fields, rows


def wrapped(name: str) -> dict[str, Any]:
    return {"type": "function", "function": TOOLS[name]}


def _calls_in(row: dict[str, Any]) -> int:
    return sum(len(m.get("tool_calls") or []) for m in row["messages"])


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_a_glaive_toolcall_set_processes_with_its_calls(
    suffix: str, tmp_path: Path, library_settings: Settings
) -> None:
    path = write(glaive_rows(), tmp_path / f"glaive{suffix}")
    fields, rows = processed(path, library_settings)
    report = fields["report"]
    assert fields["status"] == "ready", fields
    assert fields["rows"] >= 295, report["problems"]
    assert fields["rows"] == 300 and report["problems"] == []
    with_calls = [row for row in rows if _calls_in(row)]
    assert len(with_calls) == 170
    assert sum(_calls_in(row) >= 2 for row in rows) >= 80  # parallel, two-turn and two-round
    for row in with_calls:
        tools = json.loads(row["tools"])
        assert all(tool["type"] == "function" for tool in tools)
        declared = {tool["function"]["name"] for tool in tools}
        for msg in row["messages"]:
            for call in msg.get("tool_calls") or []:
                assert call["function"]["name"] in declared
                assert isinstance(json.loads(call["function"]["arguments"]), dict)
            if msg["role"] == "tool":
                assert msg["name"] in declared
    assert max(map(int, fields["stats"]["turns"])) == 6  # user, call, result, call, result, answer


def test_tools_count_in_lengths_and_duplicates() -> None:
    rows = glaive_rows(1, calls=1)
    spec = SHAREGPT.model_copy(update={"messages_column": "conversations"})
    mapper = RowMapper(spec, ["conversations", "tools"])
    record = mapper.map(rows[0]).record
    assert record is not None
    prompt, answer, _ = rendered_texts(record)
    bare = {"messages": record["messages"]}
    assert len(prompt) > len(rendered_texts(bare)[0])  # the declarations are in the prompt
    for name in json.loads(rows[0]["tools"]):
        assert name["name"] in prompt
    assert answer == "Here is what I found for question 0.<end_of_turn>\n"
    other = json.loads(json.dumps(record))
    calls = other["messages"][1]["tool_calls"]
    calls[0]["function"]["arguments"] = calls[0]["function"]["arguments"].replace("0", "1")
    assert duplicate_keys(record) == duplicate_keys(json.loads(json.dumps(record)))
    assert duplicate_keys(record)[1] != duplicate_keys(other)[1]


def test_glaive_rows_become_the_agreed_record_shape() -> None:
    rows = glaive_rows(12, calls=6)
    guess = guess_mapping(["conversations", "tools"], rows)
    assert guess.sure and guess.mapping is not None
    assert (guess.mapping.layout, guess.mapping.tools_column) == ("sharegpt", "tools")
    mapper = RowMapper(guess.mapping, ["conversations", "tools"])
    one = mapper.map(rows[0]).record
    first = json.loads(rows[0]["conversations"][1]["value"])["name"]
    assert one is not None
    assert one["messages"][1:] == [
        {
            "role": "assistant",
            "content": [],
            "tool_calls": [
                {
                    "type": "function",
                    "function": {
                        "name": first,
                        "arguments": json.dumps(_arguments(first, 0), ensure_ascii=False),
                    },
                }
            ],
        },
        {"role": "tool", "name": first, "content": [{"type": "text", "text": _result(first, 0)}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Here is what I found for question 0."}],
        },
    ]
    assert json.loads(one["tools"]) == [
        {"type": "function", "function": definition} for definition in json.loads(rows[0]["tools"])
    ]
    said = mapper.map(rows[5]).record  # a gpt text, then two call turns: one assistant message
    assert said is not None
    caller = said["messages"][1]
    assert caller["content"] == [{"type": "text", "text": "Let me look that up (5)."}]
    assert [c["function"]["name"] for c in caller["tool_calls"]] == [
        json.loads(rows[5]["conversations"][n]["value"])["name"] for n in (2, 3)
    ]
    assert [m["name"] for m in said["messages"][2:4]] == [
        c["function"]["name"] for c in caller["tool_calls"]
    ]
    plain = mapper.map(rows[6]).record  # a plain chat (no tools): no tool keys at all
    assert plain is not None and "tools" not in plain
    assert all(set(m) == {"role", "content"} for m in plain["messages"])
    assert "tools_column" not in MappingSpec(layout="sharegpt", messages_column="c").model_dump()


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_an_openai_tool_calls_set_processes(
    suffix: str, tmp_path: Path, library_settings: Settings
) -> None:
    path = write(openai_rows(), tmp_path / f"openai{suffix}")
    fields, rows = processed(path, library_settings)
    assert fields["status"] == "ready", fields
    assert fields["rows"] == 300 and fields["report"]["problems"] == []
    with_calls = [row for row in rows if _calls_in(row)]
    assert len(with_calls) == 170
    for row in with_calls:
        messages = row["messages"]
        callers = [m for m in messages if m.get("tool_calls")]
        results = [m for m in messages if m["role"] == "tool"]
        # results came in the reverse order of the calls, each named by its tool_call_id
        assert [m["name"] for m in results] == [
            c["function"]["name"] for c in reversed(callers[0]["tool_calls"])
        ]
        tools = json.loads(row["tools"])
        assert set(tools[0]["function"]) == {"name", "description", "parameters"}
        assert "None" not in row["tools"] and "null" not in row["tools"]


def test_nested_arguments_and_tools_lose_the_nulls_a_parquet_file_adds(tmp_path: Path) -> None:
    """A Parquet file gives every row's objects all rows' keys: the nulls are not arguments."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Ask {name}"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": name, "arguments": _arguments(name, 1)}}],
                },
                {"role": "tool", "content": '{"ok": true}'},
                {"role": "assistant", "content": "Done."},
            ],
            "tools": [TOOLS[name]],
        }
        for name in ("get_weather", "get_stock_price")
    ]
    table = read_table(write(rows, tmp_path / "nested.parquet"), "nested.parquet").table
    read = records(table)
    assert read[1]["messages"][1]["tool_calls"][0]["function"]["arguments"]["city"] is None
    guess = guess_mapping(table.column_names, read)
    assert guess.mapping is not None and guess.mapping.tools_column == "tools"
    mapper = RowMapper(guess.mapping, table.column_names)
    record = mapper.map(read[1]).record
    assert record is not None
    assert record["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"symbol": "S1"}'
    assert record["messages"][2] == {
        "role": "tool",
        "content": [{"type": "text", "text": '{"ok": true}'}],
        "name": "get_stock_price",
    }
    assert json.loads(record["tools"]) == [wrapped("get_stock_price")]


def test_detection_fills_the_tools_column_only_for_tool_definitions() -> None:
    rows = glaive_rows(8, calls=4)
    for name in ("tools", "functions"):
        renamed = [{"conversations": r["conversations"], name: r["tools"]} for r in rows]
        guess = guess_mapping(["conversations", name], renamed)
        assert guess.mapping is not None and guess.mapping.tools_column == name
        assert f"`{name}` holds the tools" in guess.reason
    chats = [{"conversations": r["conversations"][:1] + r["conversations"][-1:]} for r in rows]
    not_tools = [{**chat, "tools": "a hammer and a saw"} for chat in chats]
    guess = guess_mapping(["conversations", "tools"], not_tools)
    assert guess.mapping is not None and guess.mapping.tools_column is None
    nulls = [{**chat, "tools": None} for chat in chats]
    guess = guess_mapping(["conversations", "tools"], nulls)
    assert guess.mapping is not None and guess.mapping.tools_column is None
    # no tools in the sample, but rows further on may have some; empty ones add nothing
    empty = [{**chat, "tools": "[]" if i % 2 else ""} for i, chat in enumerate(chats)]
    guess = guess_mapping(["conversations", "tools"], empty)
    assert guess.mapping is not None and guess.mapping.tools_column == "tools"
    record = RowMapper(guess.mapping, ["conversations", "tools"]).map(empty[0]).record
    assert record is not None and "tools" not in record
    # OpenAI assistant turns that call tools may leave their content out altogether
    messages = openai_rows(4, calls=4)
    for row in messages:
        for msg in row["messages"]:
            if msg.get("tool_calls"):
                del msg["content"]
    guess = guess_mapping(["messages", "tools"], messages)
    assert guess.mapping is not None
    assert (guess.mapping.layout, guess.mapping.tools_column) == ("messages", "tools")
    assert all(RowMapper(guess.mapping, ["messages", "tools"]).map(r).record for r in messages)


# -- one bad row per problem ---------------------------------------------------------------------
SHAREGPT = MappingSpec(layout="sharegpt", messages_column="turns", tools_column="tools")
WEATHER = json.dumps([TOOLS["get_weather"]])


def _problems(
    turns: list[dict[str, Any]], tools: Any = WEATHER, spec: MappingSpec = SHAREGPT
) -> set[str]:
    result = RowMapper(spec, ["turns", "tools"]).map({"turns": turns, "tools": tools})
    codes = {code for code, _ in result.problems}
    assert (result.record is None) == bool(codes)
    assert all(code in DESCRIPTIONS for code in codes)
    assert all(detail for _, detail in result.problems)
    return codes


def _turns(call: Any, *after: dict[str, str]) -> list[dict[str, str]]:
    value = call if isinstance(call, str) else json.dumps(call)
    return [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": value},
        *after,
    ]


RESULT = {"from": "observation", "value": '{"temp": 3}'}
ANSWER = {"from": "gpt", "value": "It is 3 degrees."}
GOOD = {"name": "get_weather", "arguments": {"city": "Oslo"}}


def test_a_good_row_has_no_problem() -> None:
    assert _problems(_turns(GOOD, RESULT, ANSWER)) == set()


@pytest.mark.parametrize(
    ("tools", "detail"),
    [
        ("[{not json", "not JSON"),
        ('"get_weather"', "not a list"),
        ('[{"description": "no name"}]', "has no name"),
        ('[{"type": "retrieval"}]', "only functions"),
        (json.dumps([TOOLS["get_weather"], TOOLS["get_weather"]]), "two tools"),
        ('[{"name": "f", "parameters": {"type": "objekt"}}]', "not a valid JSON schema"),
        ('[{"name": "f", "parameters": "a string"}]', "not a JSON schema"),
    ],
)
def test_a_malformed_tools_column(tools: str, detail: str) -> None:
    result = RowMapper(SHAREGPT, ["turns", "tools"]).map(
        {"turns": _turns(GOOD, RESULT, ANSWER), "tools": tools}
    )
    assert [code for code, _ in result.problems] == ["bad_tools"]
    assert detail in result.problems[0][1]


def test_an_unreadable_call() -> None:
    # the call is left out, so its result follows no call: both are said
    both = {"bad_tool_call", "orphan_result"}
    assert _problems(_turns("{name: get_weather", RESULT, ANSWER)) == both
    assert _problems(_turns({"arguments": {}}, RESULT, ANSWER)) == both
    assert _problems(_turns([GOOD, "get_weather"], RESULT, ANSWER)) == {"bad_tool_call"}


def test_a_call_to_a_tool_the_row_does_not_define() -> None:
    call = {"name": "get_time", "arguments": {"city": "Oslo"}}
    assert _problems(_turns(call, RESULT, ANSWER)) == {"undefined_tool"}
    assert _problems(_turns(call, RESULT, ANSWER), tools="[]") == set()  # no tools: no check


@pytest.mark.parametrize("arguments", ["{city: Oslo}", "[1, 2]", '"Oslo"', 42])
def test_arguments_that_are_not_a_json_object(arguments: Any) -> None:
    call = {"name": "get_weather", "arguments": arguments}
    assert _problems(_turns(call, RESULT, ANSWER)) == {"bad_arguments"}


@pytest.mark.parametrize(
    "arguments",
    [{"town": "Oslo"}, {"city": 7}, {"city": "Oslo", "unit": "kelvin"}],
)
def test_arguments_that_do_not_match_the_schema(arguments: dict[str, Any]) -> None:
    call = {"name": "get_weather", "arguments": arguments}
    assert _problems(_turns(call, RESULT, ANSWER)) == {"arguments_schema"}


def test_a_result_with_no_call_before_it() -> None:
    turns = [{"from": "human", "value": "Hi"}, RESULT, ANSWER]
    assert _problems(turns) == {"orphan_result"}
    assert _problems([RESULT, {"from": "human", "value": "Hi"}, ANSWER]) == {"orphan_result"}
    chat = [{"from": "human", "value": "Hi"}, ANSWER, RESULT, ANSWER]
    assert _problems(chat) == {"orphan_result"}


def test_more_results_than_calls() -> None:
    assert _problems(_turns(GOOD, RESULT, RESULT, ANSWER)) == {"extra_results"}


def test_a_conversation_that_ends_on_a_call() -> None:
    assert _problems(_turns(GOOD)) == {"unanswered_call"}
    assert _problems(_turns(GOOD, RESULT)) == {"unanswered_call"}


def test_a_call_whose_result_never_comes() -> None:
    turns = _turns(GOOD, {"from": "human", "value": "Well?"}, ANSWER)
    assert _problems(turns) == {"role_order"}


def test_other_modes_refuse_tool_calls() -> None:
    prompts = MappingSpec(
        mode="prompt_only", layout="sharegpt", messages_column="turns", tools_column="tools"
    )
    assert _problems(_turns(GOOD, RESULT, ANSWER), spec=prompts) == {"tool_calls_unsupported"}
    kept = RowMapper(prompts, ["turns", "tools"]).map(
        {"turns": [{"from": "human", "value": "Weather in Oslo?"}], "tools": WEATHER}
    )
    assert kept.record is not None  # prompt-only keeps the tools for later
    assert json.loads(kept.record["tools"]) == [wrapped("get_weather")]
    lm = MappingSpec(mode="language_modeling", layout="sharegpt", messages_column="turns")
    assert "tool_calls_unsupported" in _problems(_turns(GOOD, RESULT, ANSWER), spec=lm)
    with pytest.raises(ValueError, match="conversation and prompt_only"):
        MappingSpec.model_validate(
            {
                "mode": "preference",
                "layout": "sharegpt",
                "messages_column": "t",
                "tools_column": "x",
                "chosen": {"column": "a"},
                "rejected": {"column": "b"},
            }
        )


def test_results_are_named_by_name_then_id_then_order() -> None:
    spec = MappingSpec(layout="messages", messages_column="turns", tools_column="tools")
    tools = [TOOLS["get_weather"], TOOLS["get_stock_price"]]
    calls = [
        {"id": "a", "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'}},
        {"id": "b", "function": {"name": "get_stock_price", "arguments": '{"symbol": "X"}'}},
    ]
    turns = [
        {"role": "user", "content": "Two things"},
        {"role": "assistant", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "b", "content": "1"},
        {"role": "tool", "name": "get_weather", "tool_call_id": "b", "content": "2"},
        {"role": "assistant", "content": "Done"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Sure", "tool_calls": calls},
        {"role": "tool", "content": [{"type": "text", "text": "3"}]},
        {"role": "tool", "content": {"value": 4}},
        {"role": "assistant", "content": "Done again"},
    ]
    record = RowMapper(spec, ["turns", "tools"]).map({"turns": turns, "tools": tools}).record
    assert record is not None
    named = [
        (m["name"], m["content"][0]["text"]) for m in record["messages"] if m["role"] == "tool"
    ]
    assert named == [
        ("get_stock_price", "1"),
        ("get_weather", "2"),
        ("get_weather", "3"),
        ("get_stock_price", '{"value": 4}'),
    ]
    assert record["messages"][6]["content"] == [{"type": "text", "text": "Sure"}]
    assert all("id" not in c for m in record["messages"] for c in m.get("tool_calls", []))


def test_plain_conversations_keep_their_order_problems() -> None:
    problems: list[tuple[str, str]] = []
    check_order([{"role": "user", "content": []}, {"role": "user", "content": []}], problems)
    assert problems == [("role_order", "two turns of the same role in a row")]


def test_a_csv_of_prompts_keeps_their_tools(tmp_path: Path, library_settings: Settings) -> None:
    """A CSV holds the tools as JSON text: prompts for GRPO keep them (graders see the rest)."""
    path = tmp_path / "prompts.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["prompt", "tools", "answer"])
        for i in range(10):
            writer.writerow([f"Weather in {CITIES[i % 8]} ({i})?", WEATHER, CITIES[i % 8]])
    fields, rows = processed(path, library_settings)
    assert fields["rows"] == 10 and fields["report"]["problems"] == []
    assert fields["stats"]["reference_columns"] == ["answer"]
    for row in rows:
        assert json.loads(row["tools"]) == [wrapped("get_weather")]
        assert (
            row["prompt"][0]["role"] == "user"
            and row["answer"] in row["prompt"][0]["content"][0]["text"]
        )


def test_statistics_of_stored_records_count_their_tools() -> None:
    spec = SHAREGPT.model_copy(update={"messages_column": "conversations"})
    mapper = RowMapper(spec, ["conversations", "tools"])
    record = mapper.map(glaive_rows(1, calls=1)[0]).record
    assert record is not None
    tokenizer = gemma_tokenizer(models_cache_dir())
    bare = {"messages": record["messages"]}  # the same conversation without its declarations
    with_tools, without = (
        compute_stats({"train": [row]}, tokenizer).prompt_tokens.max for row in (record, bare)
    )
    assert with_tools == count_tokens([rendered_texts(record)[0]], tokenizer)[0]
    assert with_tools > without + 40  # two declared tools


def test_nulls_in_json_text_are_kept() -> None:
    """Only nested data gets other rows' keys as nulls: JSON text says exactly what it means."""
    tools = json.dumps([{"name": "f", "parameters": {"type": "object", "default": None}}])
    call = {"name": "f", "arguments": {"when": None}}
    result = RowMapper(SHAREGPT, ["turns", "tools"]).map(
        {"turns": _turns(call, RESULT, ANSWER), "tools": tools}
    )
    assert result.record is not None, result.problems
    assert result.record["messages"][1]["tool_calls"][0]["function"]["arguments"] == (
        '{"when": null}'
    )
    assert json.loads(result.record["tools"])[0]["function"]["parameters"]["default"] is None
    nested = RowMapper(SHAREGPT, ["turns", "tools"]).map(
        {"turns": _turns(call, RESULT, ANSWER), "tools": json.loads(tools)}
    )
    assert nested.record is not None
    assert "default" not in json.loads(nested.record["tools"])[0]["function"]["parameters"]
