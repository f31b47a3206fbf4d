"""The tool_calls suite: its scorer on hand-made answers (the right call, a wrong tool, wrong
arguments, arguments that break the schema, a call where none was due, malformed call text,
parallel calls in another order), which rows become its samples and how they are asked (the
prompt declares the row's tools, generation stops at the response marker), and evaluations of
tiny-random-gemma3 and of a tiny Gemma fine-tuned to call a tool through the real runner."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tuneforge.data.conversation import message
from tuneforge.evaluation.comparison import main_metric, metric_label, verdict
from tuneforge.evaluation.fitting import fitting_suite
from tuneforge.evaluation.metrics.tool_calls import ToolReference, tool_calls
from tuneforge.evaluation.report import csv_table, is_right
from tuneforge.evaluation.run import prompt_text, run_evaluation, sample_params
from tuneforge.evaluation.samples import select_samples, shown_text, to_sample
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.inference.params import GenerationParams, ModelRef
from tuneforge.models.chat_template import GEMMA_3, GEMMA_4
from tuneforge.models.tool_format import FUNCTION_GEMMA_MARKERS, GEMMA_4_MARKERS, call_text
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

TINY = "tiny-random-gemma3"
MARKERS = FUNCTION_GEMMA_MARKERS
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
DECLARED = (WEATHER, TIME)


def said(name: str, markers: Any = MARKERS, **arguments: Any) -> str:
    """A call as Gemma writes it."""
    return call_text({"function": {"name": name, "arguments": arguments}}, markers)


def expects(*calls: tuple[str, dict[str, Any]]) -> ToolReference:
    return ToolReference([{"name": n, "arguments": a} for n, a in calls], DECLARED)


OSLO = expects(("get_weather", {"city": "Oslo", "days": 2}))
IN_WORDS = ToolReference((), DECLARED)


def scored(answer: str, reference: ToolReference, markers: Any = MARKERS) -> dict[str, Any]:
    (sample,) = tool_calls([answer], [reference], markers).per_sample
    return dict(sample)


# -- the scorer -------------------------------------------------------------------------------
def test_the_right_call_passes_every_check_whatever_the_key_order_and_text_before() -> None:
    answer = "Let me look. " + call_text(
        {"function": {"name": "get_weather", "arguments": '{"days": 2.0, "city": "Oslo"}'}},
        MARKERS,
    )
    sample = scored(answer, OSLO)
    assert sample == {
        "expects_call": True,
        "called": True,
        "tool_name": True,
        "arguments": True,
        "schema_valid": True,
        "correct": True,
        "score": 1.0,
        "calls": 'get_weather({"city": "Oslo", "days": 2.0})',
        "failed": "",
        "problem": "",
    }
    # Gemma 4 writes the same notation with its own markers; Gemma 3's do not parse there.
    gemma_4 = said("get_weather", GEMMA_4_MARKERS, city="Oslo", days=2)
    assert scored(gemma_4, OSLO, GEMMA_4_MARKERS)["correct"] is True
    assert scored(gemma_4, OSLO)["called"] is False


def test_a_wrong_tool_fails_the_name_and_arguments() -> None:
    sample = scored(said("get_time", zone="CET"), OSLO)
    assert (sample["tool_name"], sample["arguments"], sample["schema_valid"]) == (
        False,
        False,
        True,
    )
    assert sample["failed"] == "tool_name, arguments" and sample["correct"] is False
    assert sample["calls"] == 'get_time({"zone": "CET"})'


def test_wrong_arguments_fail_only_the_arguments() -> None:
    for wrong in ({"city": "Bergen", "days": 2}, {"city": "Oslo"}, {"city": "Oslo", "days": 3}):
        sample = scored(said("get_weather", **wrong), OSLO)
        assert (sample["tool_name"], sample["arguments"], sample["schema_valid"]) == (
            True,
            False,
            True,
        ), wrong
        assert sample["failed"] == "arguments"


def test_arguments_that_break_the_schema_or_call_an_undeclared_tool() -> None:
    text_days = scored(said("get_weather", city="Oslo", days="2"), OSLO)
    assert text_days["failed"] == "arguments, schema_valid"
    assert "do not match its parameters at days" in str(text_days["problem"])
    missing = scored(said("get_weather", days=2), OSLO)
    assert missing["schema_valid"] is False and "'city' is a required property" in str(
        missing["problem"]
    )
    undeclared = scored(said("get_news", city="Oslo"), OSLO)
    assert undeclared["failed"] == "tool_name, arguments, schema_valid"
    assert "not among the row's tools" in str(undeclared["problem"])
    # Valid against the schema although not the reference's call.
    assert scored(said("get_weather", city="Rome"), OSLO)["schema_valid"] is True


def test_a_call_where_none_was_due_and_an_answer_in_words() -> None:
    false_call = scored(said("get_weather", city="Oslo"), IN_WORDS)
    assert false_call == {
        "expects_call": False,
        "called": True,
        "no_call": False,
        "correct": False,
        "score": 0.0,
        "calls": 'get_weather({"city": "Oslo"})',
        "failed": "no_call",
        "problem": "",
    }
    words = scored("It is sunny in Oslo.", IN_WORDS)
    assert words["no_call"] is True and words["correct"] is True and words["calls"] == ""
    # No answer in words where a call was due.
    missed = scored("It is sunny in Oslo.", OSLO)
    assert missed["called"] is False and missed["failed"] == "tool_name, arguments, schema_valid"


def test_malformed_call_text_counts_as_a_call_that_fails() -> None:
    opening, closing = MARKERS.call
    for text in (
        f"{opening}call:get_weather{{city:<escape>Oslo",  # cut off
        f"{opening}get_weather(city='Oslo'){closing}",  # not the notation
        f"{opening}call:get_weather{{city:<escape>Oslo<escape>{closing}",  # object not closed
    ):
        due = scored(text, OSLO)
        assert due["called"] is True and due["correct"] is False
        assert due["failed"] == "tool_name, arguments, schema_valid"
        assert str(due["problem"]).startswith("malformed call: ")
        assert due["calls"] == ""
        not_due = scored(text, IN_WORDS)
        assert not_due["no_call"] is False and not_due["failed"] == "no_call"


def test_parallel_calls_pair_up_in_any_order_and_count() -> None:
    both = expects(("get_weather", {"city": "Oslo"}), ("get_time", {"zone": "CET"}))
    swapped = said("get_time", zone="CET") + said("get_weather", city="Oslo")
    assert scored(swapped, both)["correct"] is True
    one = scored(said("get_time", zone="CET"), both)
    assert (one["tool_name"], one["arguments"]) == (False, False)
    twice = expects(("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"}))
    repeated = said("get_weather", city="Oslo") + said("get_weather", city="Oslo")
    sample = scored(repeated, twice)
    assert (sample["tool_name"], sample["arguments"], sample["schema_valid"]) == (
        True,
        False,
        True,
    )


def test_the_metrics_are_shares_of_the_samples_each_check_applies_to() -> None:
    answers = [
        said("get_weather", city="Oslo", days=2),  # right
        said("get_weather", city="Oslo", days="2"),  # right tool, wrong and invalid arguments
        said("get_time", zone="CET"),  # wrong tool, valid
        "Hello!",  # no call where none is due
        said("get_time", zone="UTC"),  # a call where none is due
    ]
    result = tool_calls(answers, [OSLO, OSLO, OSLO, IN_WORDS, IN_WORDS], MARKERS)
    assert result.metrics == pytest.approx(
        {
            "tool_name_accuracy": 2 / 3,
            "arguments_exact": 1 / 3,
            "schema_valid": 2 / 3,
            "no_call_when_none": 1 / 2,
        }
    )
    assert result.details == {
        "call_samples": 3,
        "text_samples": 2,
        "answers_with_calls": 4,
        "malformed": 0,
    }
    assert [is_right(s) for s in result.per_sample] == [True, False, False, True, False]
    # Without answers in words there is no false-call rate, and the reverse.
    assert set(tool_calls(["x"], [OSLO], MARKERS).metrics) == {
        "tool_name_accuracy",
        "arguments_exact",
        "schema_valid",
    }
    assert set(tool_calls(["x"], [IN_WORDS], MARKERS).metrics) == {"no_call_when_none"}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="pair up"):
        tool_calls(["a", "b"], [OSLO], MARKERS)
    with pytest.raises(TypeError, match="not a ToolReference"):
        tool_calls(["a"], ["get_weather"], MARKERS)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty"):
        tool_calls([], [], MARKERS)


# -- samples ----------------------------------------------------------------------------------
def weather_call(city: str) -> dict[str, Any]:
    arguments = json.dumps({"city": city})
    return {"type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def calling(city: str, *, text: str = "", tools: Any = (WEATHER, TIME)) -> dict[str, Any]:
    """A conversation that asks, calls get_weather, gets the result and answers."""
    answer = message("assistant", text) if text else {"role": "assistant", "content": []}
    return {
        "messages": [
            message("system", "Be brief."),
            message("user", f"Weather in {city}?"),
            {**answer, "tool_calls": [weather_call(city)]},
            {"role": "tool", "name": "get_weather", "content": [{"type": "text", "text": "15"}]},
            message("assistant", f"15 degrees in {city}."),
        ],
        "tools": json.dumps(list(tools)),
    }


def chatting(tools: bool = True) -> dict[str, Any]:
    """A conversation with tools that answers in words, after a first exchange."""
    record: dict[str, Any] = {
        "messages": [
            message("user", "Hi"),
            message("assistant", "Hello!"),
            message("user", "Tell me a joke."),
            message("assistant", "Two tools walk into a bar."),
        ]
    }
    if tools:
        record["tools"] = json.dumps([WEATHER])
    return record


def test_rows_become_samples_at_their_first_call() -> None:
    later = calling("Rome")
    later["messages"][1:1] = [message("user", "Hi"), message("assistant", "Hello!")]
    records = [calling("Oslo", text="Looking."), chatting(), chatting(tools=False), later]
    records.append({"prompt": [message("user", "Weather?")], "tools": json.dumps([WEATHER])})
    samples, skipped = select_samples(records, "tool_calls", max_samples=10, seed=0)
    assert [s.index for s in samples] == [0, 1, 3] and skipped == 2
    first, words, third = samples
    assert [m["role"] for m in first.prompt] == ["system", "user"]
    assert first.calls == ({"name": "get_weather", "arguments": {"city": "Oslo"}},)
    assert first.reference == 'Looking. get_weather({"city": "Oslo"})'
    assert first.tools == [WEATHER, TIME]
    assert words.calls == () and words.reference == "Two tools walk into a bar."
    assert [m["role"] for m in third.prompt] == ["system", "user", "assistant", "user"]
    # Other suites keep asking up to the last answer, and declare the row's tools too.
    other = to_sample(0, records[0])
    assert other is not None and other.reference == "15 degrees in Oslo." and other.calls == ()
    assert other.tools == [WEATHER, TIME]
    # A row whose tools cannot be read is left out rather than asked without them.
    broken = {**calling("Oslo"), "tools": "[{not json"}
    assert select_samples([broken], "conversation", max_samples=5, seed=0)[1] == 1


def test_the_prompt_declares_the_tools_and_generation_stops_at_the_response_marker() -> None:
    (sample,), _ = select_samples([calling("Oslo")], "tool_calls", max_samples=5, seed=0)
    for chat in (GEMMA_3, GEMMA_4):
        text = prompt_text(sample, chat)
        assert text == chat.render(sample.prompt, tools=[WEATHER, TIME], add_generation_prompt=True)
        assert text.count(chat.tool_markers.declaration[0]) == 2
        assert "Be brief." in text and text.endswith(chat.generation_prompt)
        params = sample_params(GenerationParams(temperature=0, stop=["###"]), sample, chat)
        assert params.stop == ["###", chat.tool_markers.response[0]]
    # A sample without tools stops as before.
    (plain,), _ = select_samples([chatting(False)], "conversation", max_samples=5, seed=0)
    assert sample_params(GenerationParams(temperature=0), plain, GEMMA_3).stop == []
    assert "declaration" not in prompt_text(plain)


def test_the_spec_and_pages_know_the_suite() -> None:
    spec = EvaluationSpec(model=TINY, dataset_id="d", suite="tool_calls")
    assert spec.suite == "tool_calls"
    with pytest.raises(ValidationError):
        EvaluationSpec(model=TINY, dataset_id="d", suite="tool_call")  # type: ignore[arg-type]
    from tuneforge.ui.evaluations import SUITES

    assert SUITES["tool_calls"].startswith("Tool calls:")
    assert metric_label("no_call_when_none") == "No call when none is due"
    from tests.evaluation.test_fitting_and_comparison import result

    metrics = [{"arguments_exact": 0.75, "schema_valid": 1.0}, {"arguments_exact": 0.0}]
    assert verdict(result("tool_calls", [9, 2], metrics)) == (
        "Learned: 9/12 answers now match, base 2/12."
    )
    assert main_metric("tool_calls", metrics[0]) == "arguments_exact"
    assert fitting_suite([calling("Oslo"), chatting()]) == "tool_calls"
    assert fitting_suite([calling("Oslo"), chatting(False), chatting(False)]) == "conversation"


# -- end to end -------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_the_tiny_random_model_is_scored_on_tool_calls(
    library_settings: Settings, tiny_model
) -> None:
    settings = library_settings  # the evaluation runs here as in its worker: no database
    records = [calling("Oslo"), chatting(), calling("Rome", text="Checking."), chatting(False)]
    spec = EvaluationSpec(
        model=TINY, dataset_id="d", suite="tool_calls", max_new_tokens=12, max_samples=10
    )
    outcome = run_evaluation(
        spec, [ModelRef(base=TINY)], records, settings, lambda *_: None, threading.Event()
    )
    assert outcome.skipped == 1 and [row["index"] for row in outcome.rows] == [0, 1, 2]
    (metrics,) = outcome.metrics
    assert set(metrics) == {
        "tool_name_accuracy",
        "arguments_exact",
        "schema_valid",
        "no_call_when_none",
    }
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    (details,) = outcome.details
    assert (details["call_samples"], details["text_samples"]) == (2, 1)
    # The metrics are the scorer's, on the answers the rows keep.
    answers = [row["answers"]["A"] for row in outcome.rows]
    references = [OSLO_ROW, IN_WORDS_ROW, ROME_ROW]
    assert tool_calls(answers, references, MARKERS).metrics == metrics
    first = outcome.rows[0]
    assert first["reference"] == 'get_weather({"city": "Oslo"})'
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    for row in outcome.rows:
        assert {"expects_call", "called", "calls", "failed", "correct"} <= set(row["scores"]["A"])
    table = csv_table(outcome.rows, ["A"]).decode()
    assert "calls_a" in table.splitlines()[0] and "failed_a" in table.splitlines()[0]


OSLO_ROW = ToolReference([{"name": "get_weather", "arguments": {"city": "Oslo"}}], [WEATHER, TIME])
ROME_ROW = ToolReference([{"name": "get_weather", "arguments": {"city": "Rome"}}], [WEATHER, TIME])
IN_WORDS_ROW = ToolReference((), [WEATHER])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_model_taught_to_call_the_tool_scores_full_marks(
    library_settings: Settings, tool_calling_model: Path
) -> None:
    """The fine-tune learnt its call after a prompt that declares the tools: asked that way
    through the runner, its answer is exactly that call, cut at the response marker."""
    from tests.fine_tuned import QUESTION, TOOLS

    call = {
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    record = {
        "messages": [
            message("user", QUESTION),
            {"role": "assistant", "content": [], "tool_calls": [call]},
            {"role": "tool", "name": "get_weather", "content": [{"type": "text", "text": "cold"}]},
            message("assistant", "It is cold in Oslo."),
        ],
        "tools": json.dumps(TOOLS),
    }
    key = "owner/train/fixture-weather/model"
    settings = library_settings
    ArtifactStore(settings.resolved_storage_url).put_dir(key, tool_calling_model)
    refs = [ModelRef(base=TINY, artifact_key=key, kind="full"), ModelRef(base=TINY)]
    spec = EvaluationSpec(
        model="weather", compare_with=TINY, dataset_id="d", suite="tool_calls", max_new_tokens=40
    )
    outcome = run_evaluation(spec, refs, [record], settings, lambda *_: None, threading.Event())
    tuned, base = outcome.metrics
    assert tuned == {"tool_name_accuracy": 1.0, "arguments_exact": 1.0, "schema_valid": 1.0}
    assert base["arguments_exact"] == 0.0
    (row,) = outcome.rows
    assert row["answers"]["A"].endswith(FUNCTION_GEMMA_MARKERS.call[1])  # stopped there
    assert row["scores"]["A"]["calls"] == 'get_weather({"city": "Oslo"})'


# -- through the API --------------------------------------------------------------------------
def openai_rows() -> list[dict[str, Any]]:
    """A tool-calling dataset as people upload it: OpenAI messages with `tool_calls`, `tool`
    results and a `tools` column."""
    rows = []
    for i in range(8):
        city = ["Oslo", "Rome", "Lima", "Kyiv"][i % 4]
        if i % 2:
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": f"Say hello {i}"},
                        {"role": "assistant", "content": f"Hello {i}!"},
                    ],
                    "tools": [WEATHER],
                }
            )
            continue
        call = {"id": f"c{i}", "type": "function", "function": weather_call(city)["function"]}
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Weather in {city}?"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": f"c{i}", "content": "15"},
                    {"role": "assistant", "content": f"15 degrees in {city}."},
                ],
                "tools": [WEATHER, TIME],
            }
        )
    return rows


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_a_tool_calling_dataset_is_evaluated_through_the_api(make_client, settings) -> None:
    from tests.api.test_evaluations_api import evaluate
    from tests.conftest import add_user, bearer
    from tests.evaluation.test_suites_api import finished, samples, upload

    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    dataset = upload(client, alice, "weather.jsonl", openai_rows(), test_size=4)
    job = evaluate(
        client, alice, model=TINY, dataset_id=dataset["id"], suite="tool_calls", max_new_tokens=8
    )
    assert job.status_code == 201, job.text
    done = finished(client, alice, job.json()["id"])
    result = client.get(f"/api/v1/evaluations/{done['id']}", headers=alice).json()
    assert result["suite"] == "tool_calls" and result["count"] == 4 and result["skipped"] == 0
    (metrics,) = result["metrics"]
    assert set(metrics) == {
        "tool_name_accuracy",
        "arguments_exact",
        "schema_valid",
        "no_call_when_none",
    }
    rows = samples(client, alice, done["id"])
    calling = [row for row in rows if row["scores"]["A"]["expects_call"]]
    (details,) = result["details"]
    assert (details["call_samples"], details["text_samples"]) == (len(calling), 4 - len(calling))
    for row in calling:
        city = row["prompt"].removeprefix("Weather in ").removesuffix("?")
        assert row["reference"] == f'get_weather({{"city": "{city}"}})'
        assert [m["role"] for m in row["messages"]] == ["user"]
    answers = [row["answers"]["A"] for row in rows]
    references = [
        ToolReference(
            [{"name": "get_weather", "arguments": {"city": row["prompt"][11:-1]}}],
            [WEATHER, TIME],
        )
        if row["scores"]["A"]["expects_call"]
        else ToolReference((), [WEATHER])
        for row in rows
    ]
    assert tool_calls(answers, references, MARKERS).metrics == pytest.approx(metrics)
    assert result["right"] == [sum(bool(row["scores"]["A"]["correct"]) for row in rows)]


@pytest.mark.heavy
def test_a_dataset_without_tools_is_refused_at_launch(make_client, settings) -> None:
    from tests.api.test_evaluations_api import evaluate
    from tests.conftest import add_user, bearer
    from tests.evaluation.test_suites_api import upload

    client = make_client(auth="local", run_jobs=False)
    alice = bearer(add_user(settings, "alice"))
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Hi {i}"},
                {"role": "assistant", "content": f"Hello {i}!"},
            ]
        }
        for i in range(6)
    ]
    dataset = upload(client, alice, "chat.jsonl", rows, test_size=2)
    refused = evaluate(client, alice, model=TINY, dataset_id=dataset["id"], suite="tool_calls")
    assert refused.status_code == 422, refused.text
    assert "has no tools" in refused.text and "dataset_id" in refused.text


def test_a_call_whose_arguments_are_not_an_object_is_no_reference() -> None:
    record = calling("Oslo")
    record["messages"][2]["tool_calls"][0]["function"]["arguments"] = "[1, 2]"
    assert select_samples([record], "tool_calls", max_samples=5, seed=0) == ([], 1)
    # Other suites still ask it, and show the call by its name.
    assert shown_text(record["messages"][2]) == "get_weather(?)"
