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
from tuneforge.models.chat_template import START_OF_IMAGE
from tuneforge.models.vision import GEMMA4_IMAGE

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


def media_text(prompt: str, marker: str) -> str:
    """`prompt` with each image placeholder written as mtmd's media `marker`. mtmd frames the
    image's embeddings with the model's own tokens (Gemma 3's `<start_of_image>` ...
    `<end_of_image>`, Gemma 4's `<|image>` ... `<image|>`); the blank lines around them are
    Gemma 3's processor's, already in Gemma 4's template."""
    return prompt.replace(START_OF_IMAGE, f"\n\n{marker}\n\n").replace(GEMMA4_IMAGE, marker)


def decode_image_causally(mtmd: Any, mtmd_ctx: Any, llm: Any, chunk: Any) -> None:
    """Encode the image `chunk` with mtmd and feed its embeddings to `llm` (a `Llama`) after
    its `n_tokens`, with causal attention among them: a Gemma 4 without bidirectional vision
    attention (E2B, E4B) reads its image so, where mtmd's own helper lets Gemma 4's image
    tokens see each other. Advances `llm.n_tokens`."""
    import ctypes

    import llama_cpp

    count = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
    if mtmd.mtmd_encode_chunk(mtmd_ctx, chunk) != 0:
        raise ValueError("llama.cpp could not encode the image.")
    width = llama_cpp.llama_model_n_embd(llm.model)
    embeddings = mtmd.mtmd_get_output_embd(mtmd_ctx)
    batch = llama_cpp.llama_batch_init(count, width, 1)
    try:
        batch.n_tokens = count
        ctypes.memmove(batch.embd, embeddings, count * width * ctypes.sizeof(ctypes.c_float))
        for i in range(count):
            batch.pos[i] = llm.n_tokens + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = False
        if llama_cpp.llama_decode(llm._ctx.ctx, batch) != 0:
            raise ValueError("llama.cpp could not read the image's embeddings.")
    finally:
        llama_cpp.llama_batch_free(batch)
    llm.n_tokens += count
