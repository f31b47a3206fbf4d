"""Which catalog models can run here: the offline machine, a reachable hub, the cache."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuneforge.models.availability import HubProbe, availability, each_availability
from tuneforge.models.catalog import CatalogEntry, catalog
from tuneforge.ui.model_picker import state_label


@pytest.fixture
def listening() -> Iterator[str]:
    """An endpoint on loopback that accepts connections, like a reachable hub."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def closed_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once closed


def test_offline_only_the_bundled_and_tiny_models_are_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", closed_endpoint())
    states = each_availability(catalog().models, tmp_path, HubProbe())
    usable = {model for model, state in states.items() if state.usable}
    assert usable == {
        "gemma-3-270m",
        "tiny-random-gemma3",
        "tiny-random-gemma3-vision",
        "tiny-random-gemma4",
        "tiny-random-gemma4-unified",
        "tiny-random-gemma4-moe",
    }
    hub = states["gemma-3-1b-it"]
    assert hub.state == "unavailable"
    assert "no model hub is reachable" in hub.reason.lower() and "not cached" in hub.reason


def test_gemma4_entries_are_no_longer_refused_for_their_chat_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listening: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", listening)  # the hub answers
    entry = catalog().get("gemma-4-e2b-it")
    assert entry is not None and entry.chat_format == "gemma-4"
    state = availability(entry, tmp_path, HubProbe())
    assert state.state == "downloadable" and state.usable
    tiny = catalog().get("tiny-random-gemma4")  # Gemma 4's layers, tokens and format
    assert tiny is not None and tiny.chat_format == "gemma-4"
    assert availability(tiny, tmp_path, HubProbe()).state == "available"


def test_a_reachable_hub_makes_hub_models_downloadable_with_their_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listening: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", listening)
    entry = catalog().get("gemma-3-1b-it")
    assert entry is not None
    state = availability(entry, tmp_path, HubProbe())
    assert state.state == "downloadable"
    assert state.download_bytes == entry.parameters * 2
    assert state_label(entry.name, state).endswith("download 1.9 GiB")  # bfloat16 weights


def test_offline_mode_answers_without_asking_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listening: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", listening)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = catalog().get("gemma-3-4b")
    assert entry is not None
    state = availability(entry, tmp_path, HubProbe())
    assert state.state == "unavailable" and "HF_HUB_OFFLINE" in state.reason


def test_a_cached_snapshot_is_available_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", closed_endpoint())
    entry = catalog().get("gemma-3-1b-it")
    assert entry is not None and entry.hub_id is not None
    snapshot = tmp_path / "hub" / "models--google--gemma-3-1b-it" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert availability(entry, tmp_path, HubProbe()).state == "unavailable"
    (snapshot / "model.safetensors").write_bytes(b"weights")
    assert availability(entry, tmp_path, HubProbe()).state == "available"


def test_a_local_model_needs_its_directory(tmp_path: Path) -> None:
    base = catalog().get("gemma-3-270m")
    assert base is not None
    entry = CatalogEntry.model_validate(
        {**base.model_dump(), "id": "mine", "source": "local", "path": str(tmp_path / "m")}
    )
    state = availability(entry, tmp_path)
    assert state.state == "unavailable" and "does not exist" in state.reason
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert availability(entry, tmp_path).state == "available"


def test_the_probe_keeps_its_answer_for_a_while() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    cached, fresh = HubProbe(timeout=1.0, ttl=60), HubProbe(timeout=1.0, ttl=0)
    assert cached.reachable(endpoint) and fresh.reachable(endpoint)
    server.close()
    assert cached.reachable(endpoint) is True  # asked once in a while, not on every page
    assert fresh.reachable(endpoint) is False
