"""The OpenAPI document declares each operation's failures in the one error shape, the token it
needs, and bounds for its integer parameters (tests/api/test_fuzz.py checks that the answers
keep to it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_isolation import PUBLIC
from tuneforge.api.deps import MAX_OFFSET

ERROR = {"$ref": "#/components/schemas/Error"}
#: Failures that answer with a body of their own.
OWN_SHAPE = {("GET", "/api/v1/health", "503")}


@pytest.fixture
def document(make_client) -> dict[str, Any]:
    document: dict[str, Any] = make_client(auth="local").get("/api/v1/openapi.json").json()
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_failure_has_the_error_shape(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["Error"]["properties"]["error"]["required"] == ["code", "message", "details"]
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        for status, response in responses.items():
            if status[0] in "45" and (method, path, status) not in OWN_SHAPE:
                schema = response["content"]["application/json"]["schema"]
                assert schema == ERROR, (method, path, status)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)


def test_protected_operations_need_a_bearer_token_and_say_401(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method, path, operation in _operations(document):
        protected = (method, path) not in PUBLIC
        assert ("security" in operation) is protected, (method, path)
        assert ("401" in operation["responses"]) is protected or (method, path) == (
            "POST",
            "/api/v1/auth/login",
        )


def test_services_add_their_statuses(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert {"403", "404", "409", "429"} <= set(paths["/api/v1/jobs"]["post"]["responses"])
    assert {"401", "429"} <= set(paths["/api/v1/auth/login"]["post"]["responses"])
    assert "503" in paths["/api/v1/datasets"]["post"]["responses"]  # the artifact store
    assert {"409", "503"} <= set(paths["/v1/chat/completions"]["post"]["responses"])


def test_offsets_are_bounded(document: dict[str, Any]) -> None:
    offsets = [
        parameter["schema"]
        for _, _, operation in _operations(document)
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "offset"
    ]
    assert len(offsets) >= 5
    assert all(schema["maximum"] == MAX_OFFSET for schema in offsets)


def test_an_unknown_preset_is_404(make_client) -> None:
    response = make_client().get("/api/v1/trainings/presets/0")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
