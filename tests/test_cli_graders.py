"""`tuneforge graders` and the client's grader methods against a real server: the library, and
trying a grader set from a file on a completion, as a table and as JSON; bad input refused in
one line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import add_user
from tests.server import running_server, server_env
from tuneforge.cli import app
from tuneforge.client import ApiError, Client
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface

runner = CliRunner()
GRADERS = [
    {"type": "numeric_match", "column": "answer", "weight": 2},
    {"type": "phrases", "name": "polite", "required": ["please"], "forbidden": ["stupid"]},
]


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, str]]:
    settings = make_settings()
    token = add_user(settings, "ada")
    with running_server(server_env(settings)) as url:
        yield url, token


@pytest.mark.timeout(120)
def test_graders_library_and_try(server: tuple[str, str], tmp_path: Path) -> None:
    url, token = server
    with Client(url, token) as tf:
        assert len(tf.grader_library()) == 8
        trial = tf.try_graders(GRADERS, "It is 42, please", {"answer": 42})
        assert trial["total"] == 3.0 and trial["max_total"] == 3.0
        with pytest.raises(ApiError) as refused:
            tf.try_graders([{"type": "regex", "pattern": "(a)\\1"}], "aa")
        assert refused.value.status == 422
    env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": token}

    def invoke(*args: str, code: int = 0, stdin: str | None = None) -> str:
        result = runner.invoke(app, ["graders", *args], env=env, input=stdin)
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output
        return result.output

    listed = invoke("library")
    assert "numeric_match: Numeric match" in listed and "example: {" in listed
    spec = tmp_path / "grpo.json"  # a spec file with its graders
    spec.write_text(json.dumps({"trainer": "grpo", "graders": GRADERS}))
    table = invoke("try", str(spec), "--completion", "So 41. Stupid.", "--row", '{"answer": 42}')
    lines = table.splitlines()
    assert lines[0].split() == ["GRADER", "WEIGHT", "SCORE", "WHY"]
    assert lines[1].split()[:3] == ["numeric_match", "2", "0.00"]
    assert lines[1].endswith("found 41, reference 42: no match")
    assert lines[2].endswith("kept 0 of 2: missing 'please', contains 'stupid'")
    assert lines[-1] == "total 0.000 of 3"
    listed_file = tmp_path / "graders.json"  # or the bare list
    listed_file.write_text(json.dumps(GRADERS))
    shown = json.loads(
        invoke(
            "try",
            str(listed_file),
            "--completion",
            "-",
            "--row",
            '{"answer": 42}',
            "--json",
            stdin="42, please",
        )
    )
    assert shown["total"] == 3.0
    bad_row = invoke("try", str(listed_file), "--completion", "x", "--row", "[1]", code=1)
    assert "--row must be a JSON object" in bad_row
    missing = invoke("try", str(tmp_path / "none.json"), "--completion", "x", code=1)
    assert "Cannot read the grader file" in missing
