"""The generator against a real OpenAI-compatible server on loopback: concurrency, retries,
the key, refusals, and `complete_all`'s reporting and stopping."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

from tests.conftest import add_user
from tests.llm_server import LlmServer
from tuneforge.data.synthesis.generator import (
    MAX_RETRY_AFTER,
    Completion,
    EndpointGenerator,
    GenerationFailed,
    GeneratorSpec,
    LocalGenerator,
    _retry_after,
    complete_all,
    open_generator,
)
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput, NotFound
from tuneforge.jobs.endpoints import check_generator
from tuneforge.services.secrets import set_secret
from tuneforge.settings import Settings

NO_WAIT = (0.0, 0.0, 0.0)


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _open(url: str, key: str | None = None, **fields: Any) -> Any:
    spec = EndpointGenerator(base_url=url, model=fields.pop("model", "writer"), **fields)
    return open_generator(spec, api_key=key, settings=Settings(), delays=NO_WAIT)


def test_spec_is_a_discriminated_union_with_bounds() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(GeneratorSpec)
    endpoint = adapter.validate_python(
        {"kind": "endpoint", "base_url": "http://x.example/v1/", "model": "m"}
    )
    assert isinstance(endpoint, EndpointGenerator)
    assert endpoint.base_url == "http://x.example/v1" and endpoint.concurrency == 8
    local = adapter.validate_python({"kind": "local", "model": "gemma-3-270m"})
    assert isinstance(local, LocalGenerator) and local.max_tokens == 512
    for bad in (
        {"kind": "endpoint", "base_url": "ftp://x/v1", "model": "m"},
        {"kind": "endpoint", "base_url": "http://x/v1", "model": "m", "concurrency": 33},
        {"kind": "endpoint", "base_url": "http://x/v1", "model": "m", "api_key_secret": "sk-1"},
        {"kind": "local", "model": "gemma-3-270m", "max_tokens": 5000},
        {"kind": "cloud", "model": "m"},
    ):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


def test_completes_with_the_key_and_the_settings() -> None:
    with LlmServer(reply=lambda body: "an answer", api_key="sk-test") as server:
        generator = _open(server.url, "sk-test", temperature=0.2, max_tokens=64)
        try:
            completion = generator.complete(_chat("one two three"))
        finally:
            generator.close()
    assert completion == Completion("an answer", 3, 2)
    (request,) = server.requests
    assert request["authorization"] == "Bearer sk-test"
    assert request["model"] == "writer"
    assert request["temperature"] == 0.2 and request["max_tokens"] == 64
    assert request["messages"] == _chat("one two three")


def test_a_wrong_key_and_a_missing_model_are_clear_refusals_without_retries() -> None:
    with LlmServer(api_key="sk-right", models={"writer"}) as server:
        generator = _open(server.url, "sk-wrong")
        with pytest.raises(GenerationFailed, match=r"refused the key .HTTP 401.*api_key_secret"):
            generator.complete(_chat("hi"))
        generator.close()
        assert len(server.requests) == 1
        generator = _open(server.url, "sk-right", model="nobody")
        with pytest.raises(GenerationFailed, match=r"404 for the model 'nobody'.*base_url"):
            generator.complete(_chat("hi"))
        generator.close()
        assert len(server.requests) == 2
    assert "sk-wrong" not in str(server.requests[-1])


def test_429_and_5xx_are_retried_then_answered() -> None:
    with LlmServer(reply=lambda body: "fine", failures=[429, 500, 503]) as server:
        generator = _open(server.url)
        try:
            assert generator.complete(_chat("hi")).text == "fine"
        finally:
            generator.close()
    assert len(server.requests) == 4


def test_an_endpoint_that_stays_down_fails_after_every_attempt() -> None:
    with LlmServer(failures=[503] * 4) as server:
        generator = _open(server.url)
        with pytest.raises(GenerationFailed, match=r"did not answer after 4 attempts .HTTP 503"):
            generator.complete(_chat("hi"))
        generator.close()


def test_retry_after_is_honoured() -> None:
    with LlmServer(reply=lambda body: "ok", failures=[429], retry_after=0.3) as server:
        generator = _open(server.url)
        start = time.perf_counter()
        assert generator.complete(_chat("hi")).text == "ok"
        assert time.perf_counter() - start >= 0.3
        generator.close()


def test_retry_after_is_bounded_and_a_date_is_not_waited_for() -> None:
    def asked(value: str) -> float:
        return _retry_after(httpx.Response(429, headers={"Retry-After": value}))

    assert asked("2.5") == 2.5
    assert asked("3600") == MAX_RETRY_AFTER
    assert asked("-4") == 0.0
    assert asked("Wed, 21 Oct 2026 07:28:00 GMT") == 0.0


def test_a_lost_connection_is_retried_and_then_named() -> None:
    with LlmServer() as server:
        url = server.url
    generator = _open(url)  # the server is gone: every connection is refused
    with pytest.raises(GenerationFailed, match=r"did not answer after 4 attempts .ConnectError"):
        generator.complete(_chat("hi"))
    generator.close()


def test_complete_all_keeps_concurrency_requests_in_flight() -> None:
    done: list[tuple[int, str]] = []
    callers: set[str] = set()

    def on_done(index: int, result: Completion | GenerationFailed) -> None:
        assert isinstance(result, Completion)
        callers.add(threading.current_thread().name)
        done.append((index, result.text))

    requests = [_chat(f"request {i}") for i in range(24)]
    with LlmServer(delay=0.05) as server:
        generator = _open(server.url, concurrency=6)
        start = time.perf_counter()
        complete_all(generator, requests, on_done)
        wall = time.perf_counter() - start
        generator.close()
    assert server.peak == 6
    assert sorted(done) == [(i, f"request {i}") for i in range(24)]
    assert callers == {threading.current_thread().name}  # reported in the calling thread
    assert wall < 24 * 0.05 / 2  # 4 rounds of 6, not 24 requests one after another


def test_complete_all_reports_failures_and_stops_when_asked() -> None:
    results: dict[int, Completion | GenerationFailed] = {}

    def reply(body: dict[str, Any]) -> str:
        return "ok"

    with LlmServer(reply=reply, delay=0.02, models={"writer"}) as server:
        generator = _open(server.url, concurrency=2)
        complete_all(
            generator,
            [_chat(str(i)) for i in range(50)],
            results.__setitem__,
            should_stop=lambda: len(results) >= 5,
        )
        generator.close()
        # Those in flight when it stopped are reported too: at most two sent when the fourth and
        # fifth results came together (sending comes before on_done), and two more after that.
        assert 5 <= len(results) <= 8
        assert len(server.requests) == len(results)

        failing = _open(server.url, model="nobody", concurrency=3)
        failures: dict[int, Completion | GenerationFailed] = {}
        complete_all(failing, [_chat("a"), _chat("b")], failures.__setitem__)
        failing.close()
    assert all(isinstance(f, GenerationFailed) for f in failures.values())
    assert sorted(failures) == [0, 1]


def test_an_exception_in_on_done_stops_the_run_and_is_raised() -> None:
    def on_done(index: int, result: Completion | GenerationFailed) -> None:
        raise RuntimeError("cancelled")

    with LlmServer(delay=0.01) as server:
        generator = _open(server.url, concurrency=2)
        with pytest.raises(RuntimeError, match="cancelled"):
            complete_all(generator, [_chat(str(i)) for i in range(20)], on_done)
        generator.close()
    assert len(server.requests) <= 4  # the first two, and the two sent as they finished


def test_complete_all_with_no_requests_sends_nothing() -> None:
    with LlmServer() as server:
        generator = _open(server.url)
        complete_all(generator, [], lambda index, result: None)
        generator.close()
    assert server.requests == []


def test_check_generator_applies_the_endpoint_policy_and_the_key_secret(
    settings: Settings,
) -> None:
    add_user(settings, "alice")
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    spec = EndpointGenerator(
        base_url="http://127.0.0.1:9/v1", model="writer", api_key_secret="GEN_KEY"
    )
    with transaction(factory) as session:
        alice = session.scalars(select(User).where(User.username == "alice")).one()
        with pytest.raises(InvalidInput, match=r"The generator.s base_url .* only administrators"):
            check_generator(spec, alice, settings, session)
        trusting = settings.model_copy(update={"trusted_endpoint_hosts": ["127.0.0.1"]})
        check_generator(spec, alice, trusting)  # the worker's check: the address only
        with pytest.raises(InvalidInput, match="The generator's key secret GEN_KEY is not set"):
            check_generator(spec, alice, trusting, session)
        set_secret(session, settings, alice, "GEN_KEY", "sk-1")
        check_generator(spec, alice, trusting, session)
        with pytest.raises(NotFound, match="No model 'no-such-model'"):
            check_generator(LocalGenerator(model="no-such-model"), alice, settings, session)
