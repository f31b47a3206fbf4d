"""`tuneforge exports` and the client's export methods against a real server and its workers:
choices with sizes, start and follow, list, a download interrupted and resumed, delete."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import add_user
from tests.fine_tuned import add_fine_tuned
from tests.server import running_server, server_env
from tuneforge.cli import app
from tuneforge.client import ApiError, Client
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface

runner = CliRunner()


@pytest.fixture
def server(
    make_settings: Callable[..., Settings], tiny_adapter: Path
) -> Iterator[tuple[str, str, str]]:
    settings = make_settings(auth="local")
    token = add_user(settings, "ada")
    model_id = add_fine_tuned(settings, "ada", tiny_adapter, "Ada's helper")
    with running_server(server_env(settings)) as url:
        yield url, token, model_id


@pytest.mark.timeout(600)
def test_exports_start_list_download_and_delete(
    server: tuple[str, str, str], tmp_path: Path
) -> None:
    url, token, model_id = server
    env = {"TUNEFORGE_URL": url, "TUNEFORGE_TOKEN": token}

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["exports", *args], env=env)
        assert result.exit_code == code, (args, result.output)
        assert "Traceback" not in result.output
        return result.output

    choices = invoke("choices", model_id).splitlines()
    assert choices[0].split() == ["FORMAT", "QUANTIZATION", "ESTIMATED", "SIZE"]
    assert any(line.split()[:2] == ["gguf", "q8_0"] for line in choices)

    started = invoke("start", model_id, "--format", "adapter").splitlines()
    export_id = started[0].split()[1]
    assert started[0] == f"Export {export_id} queued."
    assert started[1].startswith(f"{export_id}: succeeded")
    assert any(line.strip().startswith("adapter_model.safetensors") for line in started)
    again = invoke("start", model_id, "--format", "adapter").splitlines()
    assert again[0] == f"An identical export exists: {export_id} (succeeded)."
    listed = invoke("list", model_id).splitlines()
    assert listed[0].split()[:3] == ["ID", "FORMAT", "STATUS"]
    assert listed[1].split()[:3] == [export_id, "adapter", "succeeded"]
    invoke("start", model_id, "--format", "adapter", "--s3", "s3://b", "--hub", "a/b", code=1)

    whole = tmp_path / "whole.zip"
    assert f"Saved {whole}" in invoke("download", export_id, "-o", str(whole))
    with zipfile.ZipFile(whole) as archive:
        assert archive.testzip() is None
        assert "README.md" in archive.namelist()
    # An interrupted download: the client continues from where the partial file ends.
    partial = tmp_path / "partial.zip"
    partial.write_bytes(whole.read_bytes()[:1000])
    with Client(url, token) as tf:
        tf.download_export(export_id, partial)
        assert partial.read_bytes() == whole.read_bytes()
        tf.download_export(export_id, partial)  # already whole: nothing more
        assert partial.read_bytes() == whole.read_bytes()
        card = tf.download_export(export_id, tmp_path / "README.md", "README.md")
        assert card.read_text().startswith("---\nbase_model: tiny-random-gemma3")
    invoke("delete", export_id)
    with Client(url, token) as tf, pytest.raises(ApiError) as missing:
        tf.get_export(export_id)
    assert missing.value.status == 404
