"""Every number a request body takes is as strict as the OpenAPI document says (type `integer` or
`number`): `true` or `"5"` is refused, where Pydantic's lax mode would take 1 or 5, while an
integer may still be written `5.0` (JSON Schema allows it, the web UI sends it) and a number `1`.

Walked over every integer and number property that the document's JSON request bodies reach, and
over the synthesis spec, which the synthesis upload takes as a JSON text in a form field: for
each object that holds such properties, a body that reaches it (tags and kinds set on the way)
with all of them set to one value."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tuneforge.data.synthesis.spec import SynthesisSpec

#: Builds a request body around the object under test.
Wrap = Callable[[dict[str, Any]], Any]
#: Sends a body; answers the status and the problems (field, problem) reported.
Send = Callable[[Any], tuple[int, list[dict[str, str]]]]
TYPE_PROBLEM = {
    "integer": "Input should be a valid integer",
    "number": "Input should be a valid number",
}


def _name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _places(node: Any, wrap: Wrap) -> Iterator[tuple[str, Wrap]]:
    """The objects `node` reaches (by schema name), each with how to wrap it into a body."""
    if "$ref" in node:
        yield _name(node["$ref"]), wrap
        return
    for variant in node.get("oneOf", node.get("anyOf", node.get("allOf", []))):
        yield from _places(variant, wrap)
    if isinstance(node.get("items"), dict):
        yield from _places(node["items"], lambda o: wrap([o]))
    if isinstance(node.get("additionalProperties"), dict):
        yield from _places(node["additionalProperties"], lambda o: wrap({"key": o}))


def _walk(roots: list[tuple[Any, Send]], schemas: dict[str, Any]) -> dict[str, tuple[Wrap, Send]]:
    """Each object schema the roots reach, with the shortest way there."""
    found: dict[str, tuple[Wrap, Send]] = {}
    todo = [(name, wrap, send) for node, send in roots for name, wrap in _places(node, _same)]
    while todo:
        name, wrap, send = todo.pop(0)
        if name in found:
            continue
        found[name] = (wrap, send)
        schema = schemas[name]
        for field, node in schema.get("properties", {}).items():
            inner = _inside(wrap, schema, field)
            todo.extend((n, w, send) for n, w in _places(node, inner))
    return found


def _same(value: dict[str, Any]) -> Any:
    return value


def _inside(wrap: Wrap, schema: dict[str, Any], field: str) -> Wrap:
    """The wrap of an object held in `schema`'s `field` (`schema`'s own tags set)."""
    return lambda value: wrap({**_tags(schema), field: value})


def _tags(schema: dict[str, Any]) -> dict[str, Any]:
    """The constant properties that pick `schema` in a union (`kind`, `trainer`, `type`)."""
    return {f: n["const"] for f, n in schema.get("properties", {}).items() if "const" in n}


def _numeric(node: dict[str, Any]) -> dict[str, Any] | None:
    """The `integer`/`number` schema of a property (its non-null variant), if it is one."""
    for variant in [node, *node.get("anyOf", [])]:
        if variant.get("type") in TYPE_PROBLEM:
            return {**node, **variant}
    return None


def _inside_bounds(schema: dict[str, Any]) -> int | None:
    """A whole number the property takes, if any."""
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
    candidates = [schema.get("default"), math.ceil(low), schema.get("maximum"), 1, 0]
    return next((int(v) for v in candidates if _whole(v) and _takes(schema, v)), None)


def _whole(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)


def _takes(schema: dict[str, Any], value: float) -> bool:
    return (
        schema.get("minimum", -math.inf) <= value <= schema.get("maximum", math.inf)
        and schema.get("exclusiveMinimum", -math.inf) < value
        and value < schema.get("exclusiveMaximum", math.inf)
    )


def _http(client: TestClient, method: str, path: str) -> Send:
    def send(body: Any) -> tuple[int, list[dict[str, str]]]:
        answer = client.request(method, path.replace("{", "").replace("}", ""), json=body)
        if answer.status_code != 422:
            return answer.status_code, []
        return answer.status_code, answer.json()["error"]["details"]["problems"]

    return send


def _synthesis(body: Any) -> tuple[int, list[dict[str, str]]]:
    """The synthesis upload's spec, read as its route reads it (test_a_synthesis_spec_... sends
    one through the route)."""
    try:
        SynthesisSpec.model_validate_json(json.dumps(body))
    except ValidationError as exc:
        return 422, [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
        ]
    return 200, []


def _reported(problems: list[dict[str, str]], field: str) -> list[str]:
    """The problems reported of `field` (of a field that takes a number or a word, such as
    `devices`, the number's problems are named after the field and its `int` member)."""
    return [p["problem"] for p in problems if field in p["field"].split(".")[-2:]]


def test_every_request_number_refuses_booleans_and_text_and_takes_whole_floats(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    document = client.get("/api/v1/openapi.json").json()
    schemas = document["components"]["schemas"]
    roots: list[tuple[Any, Send]] = [
        (operation["requestBody"]["content"]["application/json"]["schema"], _http(client, m, p))
        for p, item in document["paths"].items()
        for m, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    synthesis = SynthesisSpec.model_json_schema(ref_template="#/$defs/{model}")
    schemas = {**schemas, **synthesis.pop("$defs"), "SynthesisSpec": synthesis}
    roots.append(({"$ref": "SynthesisSpec"}, _synthesis))

    checked: list[str] = []
    taken: list[str] = []
    failures: list[str] = []
    for name, (wrap, send) in sorted(_walk(roots, schemas).items()):
        fields = {
            field: numeric
            for field, node in schemas[name].get("properties", {}).items()
            if (numeric := _numeric(node)) is not None
        }
        if not fields:
            continue
        checked.extend(f"{name}.{field}" for field in fields)
        for wrong in (True, False, "5", "1e-4"):
            status, problems = send(wrap({**_tags(schemas[name]), **dict.fromkeys(fields, wrong)}))
            failures.extend(
                f"{name}.{field} = {wrong!r}: {status} {_reported(problems, field)}"
                for field, schema in fields.items()
                if status != 422 or TYPE_PROBLEM[schema["type"]] not in _reported(problems, field)
            )
        # An integer written 5.0, a number written 1: no problem with either.
        whole = {
            field: float(value) if schema["type"] == "integer" else value
            for field, schema in fields.items()
            if (value := _inside_bounds(schema)) is not None
        }
        taken.extend(f"{name}.{field}" for field in whole)
        _, problems = send(wrap({**_tags(schemas[name]), **whole}))
        failures.extend(
            f"{name}.{field} = {value!r}: {_reported(problems, field)}"
            for field, value in whole.items()
            if _reported(problems, field)
        )
    assert not failures, "\n".join(failures)
    assert len(checked) >= 189
    assert len(taken) >= 170, sorted(set(checked) - set(taken))
    assert {
        "ExactMatch.weight",
        "SplitSpec.seed",
        "SFTSpec.max_steps",
        "GRPOSpec.num_generations",
        "DiagnosticSpec.fail_after",
        "QuotaSet.storage_bytes",
        "ChatCompletionRequest.top_k",
        "CurationSettings.near_duplicate_similarity",
        "ChunkSettings.max_tokens",
    } <= set(checked)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "diagnostic", "spec": {"seconds": 0.0, "fail_after": 0}}, None),
        ({"kind": "diagnostic", "spec": {"seconds": False}}, "seconds"),
        ({"kind": "diagnostic", "spec": {"seconds": "1e-4"}}, "seconds"),
    ],
)
def test_a_job_takes_real_numbers_only(
    make_client: Callable[..., TestClient], body: dict[str, Any], field: str | None
) -> None:
    answer = make_client().post("/api/v1/jobs", json=body)
    if field is None:
        assert answer.status_code == 201, answer.text
        assert answer.json()["spec"]["fail_after"] == 0
    else:
        assert answer.status_code == 422
        problems = answer.json()["error"]["details"]["problems"]
        assert _reported(problems, field) == ["Input should be a valid number"]


def test_an_integer_written_as_a_whole_float_counts_as_that_integer(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()

    def total(minimum: Any, weight: Any) -> Any:
        grader = {"type": "length", "unit": "chars", "minimum": minimum, "weight": weight}
        return client.post(
            "/api/v1/trainings/graders/try", json={"graders": [grader], "completion": "12345"}
        )

    assert total(5.0, 2).json()["total"] == 2.0  # five characters: long enough
    assert total(10.0, 2).json()["total"] == 1.0  # half the minimum: half the reward
    for minimum, weight in ((5.5, 2), (True, 2), ("5", 2), (5, True), (5, "2")):
        assert total(minimum, weight).status_code == 422, (minimum, weight)


def test_a_synthesis_spec_with_a_boolean_for_a_number_is_refused(
    make_client: Callable[..., TestClient],
) -> None:
    spec = {"generator": {"kind": "local", "model": "tiny-random-gemma3"}, "pairs_per_chunk": True}
    answer = make_client().post(
        "/api/v1/datasets/synthesize",
        files={"files": ("notes.txt", b"Some text.", "text/plain")},
        data={"spec": json.dumps(spec)},
    )
    assert answer.status_code in (400, 422), answer.text
    assert "pairs_per_chunk: Input should be a valid integer" in answer.json()["error"]["message"]


@pytest.mark.parametrize("value", [1, 0, "true"])
def test_the_synthesis_specs_flags_are_strict_too(value: Any) -> None:
    """The synthesis spec is a form field's JSON text, outside the document's request schemas
    that tests/api/test_strict_booleans.py walks: its flags are strict all the same."""
    synthesis = SynthesisSpec.model_json_schema(ref_template="#/$defs/{model}")
    schemas = {**synthesis.pop("$defs"), "SynthesisSpec": synthesis}
    checked = []
    for name, (wrap, send) in _walk([({"$ref": "SynthesisSpec"}, _synthesis)], schemas).items():
        properties = schemas[name].get("properties", {})
        flags = [field for field, node in properties.items() if node.get("type") == "boolean"]
        if flags:
            _, problems = send(wrap({**_tags(schemas[name]), **dict.fromkeys(flags, value)}))
            for field in flags:
                assert _reported(problems, field) == ["Input should be a valid boolean"], field
            checked.extend(flags)
    assert {"split_pages", "require_question_mark", "drop_refusals"} <= set(checked)
