"""What the server's child processes inherit (a job's worker, the inference server): a minimal
environment, and their settings through a file.

A worker runs a user's job, and the inference server runs users' models, so they get only what
running models needs from the server's environment: the paths, the locale, the variables of
PyTorch, Hugging Face, the BLAS libraries and CUDA, proxies and certificates. Variables named
like a secret (a token, key, password or credential) stay behind, except the server's Hugging
Face token (the catalog's models are downloaded, gated ones too), the storage's own credentials
when the artifact store is remote (models and results are read and written there) and the
server's tracking keys (`WANDB_*`, `MLFLOW_*`) where an administrator lends them
(`tracking_server_credentials`).

The settings, which carry the secret key and the database URL, go through a file that only the
server's user can read (0600, in a 0700 folder of the data directory); the child reads it and
removes it at once, and the job runner removes any a worker never read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tuneforge.settings import Settings

#: The variable that tells a worker where its settings file is.
SETTINGS_FILE_ENV = "TUNEFORGE_WORKER_SETTINGS_FILE"

_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "PYTHONPATH", "PYTHONHASHSEED", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SSL_CERT_FILE",
        "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
        "ALL_PROXY", "NO_PROXY", "TOKENIZERS_PARALLELISM", "WNSEARCHDIR",
    }
)  # fmt: skip
_PREFIXES = (
    "LC_", "HF_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "CUDA_", "NVIDIA_", "OMP_", "MKL_",
    "OPENBLAS_", "KMP_", "XDG_", "GGML_", "LLAMA_", "COVERAGE_", "AWS_", "GOOGLE_",
)  # fmt: skip
_HUB_TOKENS = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})  # for the catalog's models
_STORAGE_PREFIXES = ("AWS_", "GOOGLE_")
_TRACKING_PREFIXES = ("WANDB_", "MLFLOW_")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL", "AUTH")


def worker_environment(
    settings: Settings, settings_file: Path, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The environment of a worker started by a server with `settings` and `environ`."""
    remote_storage = not settings.resolved_storage_url.startswith("file://")
    env = {SETTINGS_FILE_ENV: str(settings_file)}
    for name, value in environ.items():
        upper = name.upper()
        if upper.startswith(_TRACKING_PREFIXES):
            keep = settings.tracking_server_credentials
        elif upper in _HUB_TOKENS:
            keep = True
        elif upper in _NAMES or upper.startswith(_PREFIXES):
            secret = any(word in upper for word in _SECRET_WORDS)
            keep = not secret or (remote_storage and upper.startswith(_STORAGE_PREFIXES))
        else:
            keep = False
        if keep:
            env[name] = value
    return env


def settings_file(settings: Settings, name: str) -> Path:
    """Where the child process `name` (a job's id, or `inference`) finds its settings."""
    return settings.data_dir / "worker-settings" / f"{name}.json"


def write_worker_settings(settings: Settings, name: str) -> Path:
    """Write the settings a child process needs (not the gateway's proxy secret) to its 0600
    file."""
    path = settings_file(settings, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o600), "w") as out:
        out.write(settings.model_copy(update={"proxy_secret": None}).model_dump_json())
    return path


def read_worker_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """In the child process: its settings, read from the file the server wrote, which is then
    removed."""
    path = Path(environ[SETTINGS_FILE_ENV])
    try:
        return Settings.model_validate_json(path.read_text())
    finally:
        path.unlink(missing_ok=True)
