"""The API fuzzed from its own OpenAPI document (schemathesis), in process: every operation of
`/api/v1` and `/v1`, as a user who has data (datasets, a training run, a model, an export, a
secret), in the coverage, fuzzing and stateful phases. It fails on any 5xx, any status the
document does not declare, any response that does not match its schema, any request that
violates the schema but is accepted, and any method a path does not take answered otherwise than
405 with `Allow`.

Jobs the fuzzer launches queue and stay queued: no job runner runs in this app, so no training
or export starts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.engine import Status, events, from_schema
from schemathesis.python.asgi import shutdown_lifespans

from tests.api.test_isolation import CSV, MAPPING, _export, _model
from tests.conftest import add_user, bearer
from tuneforge.api.app import create_app
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface

#: What the fuzzer checks.
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
)
#: The dataset upload takes any file: schemathesis' "schema-violating" multipart cases (a `file`
#: part whose value it generated as a number, say) are on the wire just files holding those bytes,
#: which the upload rightly accepts, so it checks nothing there about rejecting them.
UPLOAD = {
    "include-path": "/api/v1/datasets",
    "include-method": "POST",
    "checks": {"negative_data_rejection": {"enabled": False}},
}
#: Operations that generate with a model: only schema-violating requests (refused before any
#: model loads); their answers are tested in tests/api/test_chat_api.py and test_openai_api.py.
GENERATING = "^(/api/v1/chat|/v1/chat/completions|/v1/completions)$"
#: How many generated requests each operation gets in the fuzzing phase, and how long the
#: stateful phase's scenarios are: about 11,300 requests in all, 2-3 minutes on 2 busy cores.
FUZZ_EXAMPLES = 10
STATEFUL_EXAMPLES = 15
STATEFUL_STEPS = 8


@pytest.fixture
def fuzzed_app(make_settings: Callable[..., Settings]) -> Iterator[tuple[FastAPI, str]]:
    """The app, and the token of a user (not an administrator) who owns a raw and a processed
    dataset, a cancelled training run, a model with an export, a token and a secret."""
    settings = make_settings(auth="local")
    app = create_app(settings, ui=False)
    token = add_user(settings, "fuzzer")
    headers = bearer(token)
    client = TestClient(app)  # the database is migrated; schemathesis runs the app's lifespan
    raw = client.post(
        "/api/v1/datasets", files={"file": ("qa.csv", CSV, "text/csv")}, headers=headers
    )
    assert raw.status_code == 201, raw.text
    processed = client.post(
        f"/api/v1/datasets/{raw.json()['id']}/process", json={"mapping": MAPPING}, headers=headers
    )
    assert processed.status_code == 201, processed.text
    spec = {"base_model": "tiny-random-gemma3", "dataset_id": processed.json()["id"]}
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": spec}, headers=headers)
    assert job.status_code == 201, job.text
    assert client.post(f"/api/v1/jobs/{job.json()['id']}/cancel", headers=headers).is_success
    model_id = _model(settings, job.json()["owner_id"], job.json()["id"])
    _export(settings, job.json()["owner_id"], model_id)
    secret = client.put("/api/v1/secrets/FUZZ_KEY", json={"value": "a value"}, headers=headers)
    assert secret.status_code == 200, secret.text
    try:
        yield app, token
    finally:
        shutdown_lifespans()


def _config(token: str) -> schemathesis.Config:
    checks: dict[str, Any] = {"enabled": False} | {name: {"enabled": True} for name in CHECKS}
    return schemathesis.Config.from_dict(
        {
            "seed": 18,
            # The same run every time: nothing learnt by earlier runs, no cache folder left behind.
            "cache": {"enabled": False},
            "auth": {"openapi": {"bearer": {"bearer": token}}},
            "checks": checks,
            "generation": {"mode": "all", "database": "none"},
            "phases": {
                "examples": {"enabled": False},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True, "generation": {"max-examples": FUZZ_EXAMPLES}},
                "stateful": {
                    "enabled": True,
                    "max-steps": STATEFUL_STEPS,
                    "generation": {"max-examples": STATEFUL_EXAMPLES},
                },
            },
            "operations": [
                {"include-path-regex": GENERATING, "generation": {"mode": "negative"}},
                # A job's event stream follows it until it ends, and the fuzzer's jobs never run:
                # the first event, or a second of waiting for one, is enough.
                {"include-path-regex": "/events$", "max-stream-events": 1, "request-timeout": 1},
                UPLOAD,
            ],
        }
    )


def test_the_api_answers_every_generated_request_as_its_document_says(
    fuzzed_app: tuple[FastAPI, str],
) -> None:
    app, token = fuzzed_app
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, config=_config(token))
    started = time.monotonic()
    failures: list[str] = []
    requests = 0
    phases: set[str] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            requests += len(event.recorder.interactions)
            phases.add(str(getattr(event, "phase", "fuzz")))
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.status == Status.FAILURE and node.failure_info is not None:
                        info = node.failure_info
                        failures.append(f"{info.failure}\n{info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            failures.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal: {event.exception!r}")
    elapsed = time.monotonic() - started
    print(f"schemathesis: {requests} requests in {elapsed:.0f} s, phases {sorted(phases)}")
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(sorted(set(failures)))
    assert requests > 5000
