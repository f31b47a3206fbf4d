"""Every boolean a request body takes is strict: `true` or `false`, never `1`, `0` or `"yes"`,
which the OpenAPI document (type `boolean`) does not allow and Pydantic would otherwise take."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.types import Strict

import tuneforge.api.app  # noqa: F401  (imports every model a request body uses)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"].rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _request_schemas(document: dict[str, Any]) -> set[str]:
    """The names of the schemas a request body can reach."""
    schemas = document["components"]["schemas"]
    todo = [
        name
        for item in document["paths"].values()
        for operation in item.values()
        for name in _refs(operation.get("requestBody", {}))
    ]
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(_refs(schemas[name]))
    return reached


def _booleans(schema: Any) -> Iterator[str]:
    for name, node in schema.get("properties", {}).items():
        variants = [node, *node.get("anyOf", [])]
        if any(variant.get("type") == "boolean" for variant in variants):
            yield name


def _models() -> dict[str, list[type[BaseModel]]]:
    found: dict[str, list[type[BaseModel]]] = {}
    todo: list[type[BaseModel]] = [BaseModel]
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        if model.__module__.startswith("tuneforge."):
            found.setdefault(model.__name__, []).append(model)
    return found


def test_every_request_boolean_is_strict(make_client) -> None:
    document = make_client().get("/api/v1/openapi.json").json()
    models = _models()
    checked = []
    for name in sorted(_request_schemas(document)):
        for field in _booleans(document["components"]["schemas"][name]):
            assert models.get(name), f"no model named {name}"
            for model in models[name]:
                metadata = model.model_fields[field].metadata
                assert any(isinstance(m, Strict) and m.strict for m in metadata), (name, field)
            checked.append(f"{name}.{field}")
    assert {"ProcessingConfig.drop_duplicates", "SFTSpec.packing", "Regex.ignore_case"} <= set(
        checked
    )


@pytest.mark.parametrize("value", [1, 0, "true", "yes"])
def test_a_number_or_a_word_for_a_boolean_is_refused(make_client, value: Any) -> None:
    client = make_client()
    answer = client.post("/api/v1/jobs", json={"kind": "diagnostic", "spec": {"fail": value}})
    assert answer.status_code == 422
    problems = answer.json()["error"]["details"]["problems"]
    assert any(p["field"].endswith("fail") and "boolean" in p["problem"] for p in problems)
