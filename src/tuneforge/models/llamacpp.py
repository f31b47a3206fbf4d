"""Opening a GGUF file in llama.cpp on this machine: the one place that builds a `Llama`.

llama.cpp moves weights into "extra buffer types" at load: repacked layouts for the CPU's
vector units and, on CPUs with AMX, tiles for AMX. On AMX CPUs the AMX path crashes the process
(a segmentation fault in `llama_decode`, seen with llama-cpp-python 0.3.36 on Gemma 3, whole
and quantised to q8_0 or Q4_K_M), so there the weights stay in ordinary CPU buffers: slower than
repacked ones, but a crash would take the Playground, an export's check or a worker down with it.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any

from tuneforge.hardware import cpu_flags

AMX_FLAGS = frozenset({"amx_int8", "amx_tile"})
_lock = threading.Lock()


@cache
def extra_buffers_safe() -> bool:
    """Whether llama.cpp may use its extra buffer types here (no AMX unit)."""
    return AMX_FLAGS.isdisjoint(cpu_flags())


def open_gguf(path: Path, **options: Any) -> Any:
    """A `llama_cpp.Llama` of the GGUF file at `path` with `options` (n_ctx, n_threads, ...),
    kept off the extra buffer types where they are not safe."""
    from llama_cpp import Llama, llama_cpp

    if extra_buffers_safe():
        return Llama(model_path=str(path), verbose=False, **options)
    # `Llama` takes its model parameters from this function and offers no option for them.
    with _lock:
        defaults = llama_cpp.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_model_default_params = without_extra_buffers
        try:
            return Llama(model_path=str(path), verbose=False, **options)
        finally:
            llama_cpp.llama_model_default_params = defaults
