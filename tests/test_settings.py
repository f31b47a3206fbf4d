"""Settings fail closed on configurations that would expose the studio."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.settings import Settings, UnsafeConfiguration


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'tuneforge.db'}"
    assert settings.resolved_storage_url == f"file://{tmp_path / 'artifacts'}"
    assert (settings.host, settings.port, settings.auth_mode) == ("127.0.0.1", 7860, "none")
    settings.check_safe()


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNEFORGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TUNEFORGE_MAX_CONCURRENT_JOBS", "7")
    monkeypatch.setenv("TUNEFORGE_STORAGE_OPTIONS", '{"anon": true}')
    settings = Settings()
    assert settings.data_dir == tmp_path and settings.max_concurrent_jobs == 7
    assert settings.storage_options == {"anon": True}


def test_auto_auth_follows_the_address(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, host="::1").auth_mode == "none"
    assert Settings(data_dir=tmp_path, host="0.0.0.0").auth_mode == "local"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host": "0.0.0.0", "auth": "none"}, "without authentication"),
        ({"host": "0.0.0.0", "auth": "local"}, "TUNEFORGE_SECRET_KEY"),
        ({"host": "10.0.0.5"}, "TUNEFORGE_SECRET_KEY"),
        (
            {"host": "0.0.0.0", "auth": "header", "secret_key": "k" * 40, "trusted_proxies": []},
            "TRUSTED_PROXIES",
        ),
    ],
)
def test_unsafe_configurations_are_refused(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(UnsafeConfiguration, match=message):
        Settings(data_dir=tmp_path, **overrides).check_safe()


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [
        ({"host": "0.0.0.0", "auth": "local"}, "local"),
        ({"host": "0.0.0.0"}, "local"),  # auto: accounts on a public address
        ({"host": "10.0.0.5", "auth": "header", "trusted_proxies": ["10.0.0.1"]}, "header"),
        ({"host": "0.0.0.0", "auth": "header", "proxy_secret": "p" * 40}, "header"),
    ],
)
def test_a_public_server_with_a_key_starts_with_that_key_and_its_auth(
    tmp_path: Path, overrides: dict[str, object], mode: str
) -> None:
    """Accepted means: the server authenticates as configured and signs sessions with the key
    it was given (no generated key file stands in for it)."""
    settings = Settings(data_dir=tmp_path, secret_key="k" * 40, **overrides)
    settings.check_safe()
    assert settings.auth_mode == mode and settings.session_secret == "k" * 40
    assert not (tmp_path / "secret_key").exists()


def test_the_generated_key_is_private_and_stable(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).session_secret
    assert len(first) >= 40 and Settings(data_dir=tmp_path).session_secret == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
