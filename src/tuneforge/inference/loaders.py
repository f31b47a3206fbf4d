"""Which engine serves a model, and how it is loaded.

`auto` picks the fastest engine that can serve the model here: vLLM on CUDA when it is installed;
llama.cpp, when the `gguf` extra is installed, for a model that has a GGUF file (the bundled
Gemma 3 270M, a fine-tune with a verified GGUF export) and for a LoRA fine-tune whose fast path
passed its check (`fast_path`: the base's GGUF with the adapter as a GGUF LoRA adapter);
transformers otherwise (every model, every fine-tune). A request with images goes to llama.cpp
only when the GGUF was exported with its image projector (`ModelRef.mmproj`), and never to vLLM
here. An engine asked for by name that cannot run here is refused with the reason.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from tuneforge.errors import EngineUnavailable, NotFound
from tuneforge.hardware import usable_cores
from tuneforge.inference import fast_path
from tuneforge.inference.engine import Engine
from tuneforge.inference.fast_path import Verdict
from tuneforge.inference.params import EngineName, ModelRef, adapter_name
from tuneforge.models.catalog import CatalogEntry, load_catalog
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose(ref: ModelRef, entry: CatalogEntry, fast: Verdict | None = None) -> str:
    """The engine for `ref` (resolving `auto`), or `EngineUnavailable` with what is missing.
    `fast` is the verdict of the fine-tune's llama.cpp fast path, if it has been checked."""
    engine: EngineName = ref.engine
    if fast is not None and not fast_path.candidate(ref, entry):
        fast = None
    if engine == "auto":
        # vLLM first: asking for CUDA imports torch, seconds that llama.cpp does not need.
        if ref.kind != "adapter" and not ref.images and installed("vllm") and cuda_available():
            return "vllm"
        if (_has_gguf(ref, entry) or (fast and fast.ok)) and installed("llama_cpp"):
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
        if fast is not None and not fast.ok:
            raise EngineUnavailable(f"llama.cpp does not serve this fine-tune. {fast.reason}")
        if not _has_gguf(ref, entry) and not fast_path.candidate(ref, entry):
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


def load(
    engine: str,
    ref: ModelRef,
    settings: Settings,
    report: Progress | None = None,
    *,
    batch: bool = False,
) -> Engine:
    """Load the engine `engine` (as chosen by `choose`) for `ref`'s base or full weights;
    `report` hears about slow first-time work (converting the bundled GGUF, a download);
    `batch`: the engine decodes answers together (an evaluation's), on llama.cpp from the
    base GGUF made for that (`fast_path.base_gguf`)."""
    threads = usable_cores()
    if engine == "llama.cpp":
        from tuneforge.inference.llamacpp_engine import LlamaCppEngine

        # llama.cpp reads the GGUF itself: no transformers directory (converting the bundled
        # GGUF into one took most of a minute of a cold start), so only the catalog entry.
        entry = load_catalog(settings.catalog_file).get(ref.base)
        if entry is None:
            raise NotFound(f"There is no model {ref.base!r} in the catalog.")
        if ref.gguf is None:  # the base (a LoRA fine-tune's adapter is attached to it)
            gguf = fast_path.base_gguf(entry, settings.models_dir, report, batch=batch)
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
    """Attach `ref`'s LoRA adapter to `engine` once (transformers: the PEFT files; llama.cpp:
    the GGUF adapter the fast path made); its name."""
    from tuneforge.inference.hf_engine import TransformersEngine
    from tuneforge.inference.llamacpp_engine import LlamaCppEngine

    if ref.artifact_key is None:
        raise EngineUnavailable(f"The {engine.name} engine cannot serve a LoRA adapter.")
    name = adapter_name(ref.artifact_key)
    if isinstance(engine, LlamaCppEngine):
        engine.add_adapter(name, fast_path.adapter_gguf(ref.artifact_key, settings.data_dir))
    elif isinstance(engine, TransformersEngine):
        engine.add_adapter(name, fetch(ref.artifact_key, settings))
    else:
        raise EngineUnavailable(f"The {engine.name} engine cannot serve a LoRA adapter.")
    return name


def prepare(
    ref: ModelRef, settings: Settings, report: Progress | None = None, wait: float | None = None
) -> str | None:
    """Make and check the llama.cpp fast path of a LoRA fine-tune the first time it is asked
    for (nothing for other models); why llama.cpp does not serve it (None: it does, or the
    model is no candidate).

    The work runs in a background thread, once per fine-tune however many ask; this call waits
    for it up to `wait` seconds (None: until it is done). When it is not done by then, the
    answer is that llama.cpp is still being prepared: the caller serves this request with
    transformers, and a later one finds the verdict."""
    entry = load_catalog(settings.catalog_file).get(ref.base)
    if entry is None or ref.artifact_key is None or not fast_path.candidate(ref, entry):
        return None
    found = fast_path.verdict(ref.artifact_key, settings.data_dir)
    if found is not None:
        return None if found.ok else found.reason
    if report is not None:
        report(PREPARING)
    with _preparing_lock:
        future = _preparing.get(ref.artifact_key)
        if future is None:
            future = _in_thread_of_its_own(ref, entry, settings)
            _preparing[ref.artifact_key] = future
    try:
        return future.result(timeout=wait)
    except TimeoutError:
        return STILL_PREPARING


#: What a request hears while the fast path is made and checked.
PREPARING = "Preparing llama.cpp for this fine-tune (once)…"
#: Why transformers answers while it is not ready.
STILL_PREPARING = (
    "llama.cpp is still being prepared for this fine-tune (once, about a minute on a CPU): "
    "transformers answers until it is ready."
)
_preparing: dict[str, Future[str | None]] = {}
_preparing_lock = threading.Lock()
#: One preparation at a time (each converts and checks a model, with all the cores).
_one_at_a_time = threading.Lock()


def _in_thread_of_its_own(
    ref: ModelRef, entry: CatalogEntry, settings: Settings
) -> Future[str | None]:
    """`_prepare` in a background thread that ends with it. Not a long-lived worker thread:
    llama.cpp's OpenMP keeps a pool of worker threads for every thread that computed with it,
    for as long as that thread lives, and with more pooled threads than cores every later
    llama.cpp computation in the process sleeps and wakes at each step (measured: the
    Playground decoded at 21 instead of 34 tokens/s once a kept thread had run a check)."""
    future: Future[str | None] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(_prepare(ref, entry, settings))
        except BaseException as exc:  # waiters hear of it rather than wait forever
            future.set_exception(exc)

    threading.Thread(target=run, name="fast-path", daemon=True).start()
    return future


def _prepare(ref: ModelRef, entry: CatalogEntry, settings: Settings) -> str | None:
    """`prepare`'s work, in the background thread."""
    assert ref.artifact_key is not None
    try:
        with _one_at_a_time:
            found = fast_path.prepare(
                ref,
                entry,
                fetch(ref.artifact_key, settings),
                settings.models_dir,
                settings.data_dir,
            )
    except Exception as exc:  # kept unjudged: a later request tries again
        log.exception("the llama.cpp fast path could not be prepared")
        return f"Preparing llama.cpp for this fine-tune failed ({type(exc).__name__}: {exc})."
    finally:
        with _preparing_lock:
            _preparing.pop(ref.artifact_key, None)
    return None if found.ok else found.reason


def verdict(ref: ModelRef, settings: Settings) -> Verdict | None:
    """The kept verdict of `ref`'s fast path (cheap: a small file), if it has been checked."""
    return (
        None if ref.artifact_key is None else fast_path.verdict(ref.artifact_key, settings.data_dir)
    )


def fetch(artifact_key: str, settings: Settings) -> Path:
    """The fine-tuned files under `artifact_key`, copied once from the artifact store into a
    local cache (artifacts are immutable once complete, so the copy never goes stale)."""
    local = _local_copy(artifact_key, settings.data_dir)
    done = local / ".complete"
    if not done.exists():
        store = ArtifactStore(settings.resolved_storage_url, settings.storage_options)
        if not store.is_complete(artifact_key):
            raise EngineUnavailable("The model's files are missing from the artifact store.")
        store.get_dir(artifact_key, local)
        done.touch()
    return local


def _local_copy(artifact_key: str, data_dir: Path) -> Path:
    return data_dir.expanduser() / "cache" / "inference" / adapter_name(artifact_key)


def forget(artifact_key: str, data_dir: Path) -> None:
    """Delete this machine's copies of a deleted fine-tune: its files fetched from the artifact
    store, and its fast path's GGUF adapter and verdict."""
    shutil.rmtree(_local_copy(artifact_key, data_dir), ignore_errors=True)
    fast_path.forget(artifact_key, data_dir)
