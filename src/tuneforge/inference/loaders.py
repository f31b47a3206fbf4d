"""Which engine serves a model, and how it is loaded.

`auto` picks the fastest engine that can serve the model here: vLLM on CUDA when it is installed;
llama.cpp, when the `gguf` extra is installed, for a model that has a GGUF file (the bundled
Gemma 3 270M, and a fine-tune with a verified GGUF export); transformers otherwise (every model,
every fine-tune). A request with images goes to llama.cpp only when the GGUF was exported with
its image projector (`ModelRef.mmproj`), and never to vLLM here. An engine asked for by name that
cannot run here is refused with the reason.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from tuneforge.errors import EngineUnavailable, NotFound
from tuneforge.inference.engine import Engine
from tuneforge.inference.params import EngineName, ModelRef
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.models.tokenizer import ensure_gguf
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

Progress = Callable[[str], None]


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose(ref: ModelRef, entry: CatalogEntry) -> str:
    """The engine for `ref` (resolving `auto`), or `EngineUnavailable` with what is missing."""
    engine: EngineName = ref.engine
    if engine == "auto":
        # vLLM first: asking for CUDA imports torch, seconds that llama.cpp does not need.
        if ref.kind != "adapter" and not ref.images and installed("vllm") and cuda_available():
            return "vllm"
        if _has_gguf(ref, entry) and installed("llama_cpp"):
            return "llama.cpp"
        return "transformers"
    if engine == "vllm":
        if not cuda_available():
            raise EngineUnavailable("vLLM needs a CUDA GPU, and this machine has none.")
        if not installed("vllm"):
            raise EngineUnavailable("vLLM is not installed here: pip install vllm.")
        if ref.kind == "adapter":
            raise EngineUnavailable(
                "The vLLM engine serves base and fully fine-tuned models; LoRA adapters use the "
                "transformers engine."
            )
        if ref.images:
            raise EngineUnavailable(
                "The vLLM engine here answers text only; images use the transformers engine."
            )
    if engine == "llama.cpp":
        if ref.images and ref.gguf is not None and ref.mmproj is None:
            raise EngineUnavailable(
                "This model's GGUF export has no image projector (mmproj), so llama.cpp cannot "
                "read images with it: use the transformers engine, or export the GGUF again."
            )
        if not _has_gguf(ref, entry):
            raise EngineUnavailable(
                f"llama.cpp runs GGUF files, and {ref.base!r}"
                + (" with a fine-tune" if ref.kind != "base" else "")
                + " has none yet: export the model as GGUF, or use the transformers engine."
            )
        if not installed("llama_cpp"):
            raise EngineUnavailable(
                "llama.cpp is not installed here: pip install 'tuneforge[gguf]'."
            )
    return engine


def _has_gguf(ref: ModelRef, entry: CatalogEntry) -> bool:
    """Whether llama.cpp has a GGUF for `ref` (with its image projector, when `ref` has images)."""
    if ref.images:
        return ref.gguf is not None and ref.mmproj is not None
    return ref.gguf is not None or (ref.kind == "base" and entry.source == "gguf-package")


def load(engine: str, ref: ModelRef, settings: Settings, report: Progress | None = None) -> Engine:
    """Load the engine `engine` (as chosen by `choose`) for `ref`'s base or full weights;
    `report` hears about slow first-time work (converting the bundled GGUF, a download)."""
    threads = max(1, len(os.sched_getaffinity(0)))
    if engine == "llama.cpp":
        from tuneforge.inference.llamacpp_engine import LlamaCppEngine

        # llama.cpp reads the GGUF itself: no transformers directory (converting the bundled
        # GGUF into one took most of a minute of a cold start), so only the catalog entry.
        entry = load_catalog(settings.catalog_file).get(ref.base)
        if entry is None:
            raise NotFound(f"There is no model {ref.base!r} in the catalog.")
        if ref.gguf is None:
            gguf = ensure_gguf(settings.models_dir)
        else:
            key, _, name = ref.gguf.rpartition("/")
            gguf = fetch(key, settings) / name
        mmproj = None
        if ref.mmproj is not None:
            key, _, name = ref.mmproj.rpartition("/")
            mmproj = fetch(key, settings) / name
        return LlamaCppEngine(gguf, threads, entry.context_length, mmproj)
    from tuneforge.models.loading import resolve

    _, path = resolve(ref.base, settings, progress=report)
    if ref.kind == "full" and ref.artifact_key:
        path = fetch(ref.artifact_key, settings)
    if engine == "vllm":
        from tuneforge.inference.vllm_engine import VllmEngine

        return VllmEngine(path)
    from tuneforge.inference.hf_engine import TransformersEngine

    return TransformersEngine(path, "cuda" if cuda_available() else "cpu")


def attach(engine: Engine, ref: ModelRef, settings: Settings) -> str:
    """Attach `ref`'s LoRA adapter to `engine` (a transformers engine) once; its name."""
    from tuneforge.inference.hf_engine import TransformersEngine

    if not isinstance(engine, TransformersEngine) or ref.artifact_key is None:
        raise EngineUnavailable(f"The {engine.name} engine cannot serve a LoRA adapter.")
    name = adapter_name(ref.artifact_key)
    engine.add_adapter(name, fetch(ref.artifact_key, settings))
    return name


def adapter_name(artifact_key: str) -> str:
    """A PEFT adapter name for an artifact key (keys hold characters PEFT names may not)."""
    return "a" + hashlib.sha256(artifact_key.encode()).hexdigest()[:16]


def fetch(artifact_key: str, settings: Settings) -> Path:
    """The fine-tuned files under `artifact_key`, copied once from the artifact store into a
    local cache (artifacts are immutable once complete, so the copy never goes stale)."""
    local = settings.data_dir.expanduser() / "cache" / "inference" / adapter_name(artifact_key)
    done = local / ".complete"
    if not done.exists():
        store = ArtifactStore(settings.resolved_storage_url, settings.storage_options)
        if not store.is_complete(artifact_key):
            raise EngineUnavailable("The model's files are missing from the artifact store.")
        store.get_dir(artifact_key, local)
        done.touch()
    return local
