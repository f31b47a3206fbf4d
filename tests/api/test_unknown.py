"""A request no operation takes: a method a path does not have answers 405 with `Allow`, a path
that does not exist 404, both in the API's error shape, under `/api/v1` and `/v1`."""

from __future__ import annotations

import pytest

from tests.conftest import add_user, bearer


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/jobs", "GET, POST"),
        ("PATCH", "/api/v1/jobs/12345", "DELETE, GET"),
        ("GET", "/api/v1/jobs/12345/cancel", "POST"),
        ("HEAD", "/api/v1/jobs", "GET, POST"),
        ("TRACE", "/api/v1/health", "GET"),
        ("POST", "/v1/models", "GET"),
    ],
)
def test_a_method_a_path_does_not_take_answers_405_with_allow(
    make_client, method: str, path: str, allowed: str
) -> None:
    client = make_client()
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allowed
    if method != "HEAD":
        error = answer.json()["error"]
        assert error["code"] == "method_not_allowed"
        assert error["message"] == f"{path} does not take {method}; it takes {allowed}."


def test_a_path_that_does_not_exist_answers_404(make_client, settings) -> None:
    client = make_client(auth="local")
    headers = bearer(add_user(settings, "ann"))
    for method, path in (("GET", "/api/v1/nothing-here"), ("DELETE", "/v1/nothing/here")):
        answer = client.request(method, path, headers=headers)
        assert answer.status_code == 404 and "allow" not in answer.headers
        assert answer.json()["error"]["code"] == "not_found"
        assert path in answer.json()["error"]["message"]
