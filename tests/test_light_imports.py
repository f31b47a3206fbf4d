"""The web process and the CLI stay light: building the app as `tuneforge serve` does, importing
every UI page, importing the CLI and printing any of its help loads none of torch, transformers
or peft (each checked in a fresh interpreter, which prints the heavy modules it loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "peft")

_REPORT = f"import json, sys; print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))"


def _heavy_modules_loaded_by(code: str, cwd: Path) -> list[str]:
    """Run `code` in a fresh interpreter (in `cwd`, with data there) and return the heavy
    modules it left in `sys.modules`."""
    env = {**os.environ, "TUNEFORGE_DATA_DIR": str(cwd / "data")}
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_REPORT}"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_building_the_web_app_loads_no_model_library(tmp_path: Path) -> None:
    code = (
        "from tuneforge.api.app import create_app\n"
        "from tuneforge.settings import Settings\n"
        "create_app(Settings())\n"
    )
    assert _heavy_modules_loaded_by(code, tmp_path) == []


def test_importing_every_ui_page_loads_no_model_library(tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil, tuneforge.ui\n"
        "names = [m.name for m in pkgutil.walk_packages(tuneforge.ui.__path__, 'tuneforge.ui.')]\n"
        "assert len(names) > 10, names\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
    )
    assert _heavy_modules_loaded_by(code, tmp_path) == []


def test_the_cli_and_all_its_help_load_no_model_library(tmp_path: Path) -> None:
    code = (
        "import typer.main\n"
        "from tuneforge.cli import app\n"
        "root = typer.main.get_command(app)\n"
        "def helps(command, path):\n"
        "    yield path\n"
        "    for name, sub in getattr(command, 'commands', {}).items():\n"
        "        yield from helps(sub, [*path, name])\n"
        "paths = list(helps(root, []))\n"
        "assert len(paths) > 10, paths\n"
        "for path in paths:\n"
        "    try:\n"
        "        root.main([*path, '--help'], prog_name='tuneforge')\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, (path, stop.code)\n"
    )
    assert _heavy_modules_loaded_by(code, tmp_path) == []
