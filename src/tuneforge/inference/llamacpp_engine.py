"""The llama.cpp engine (the `gguf` extra): GGUF models, the fast path on a CPU.

llama.cpp keeps one KV cache per loaded model, so one generation runs at a time per model; the
model is small and fast enough that taking turns per request is the right trade here.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from tuneforge.inference.engine import Delta, Event, Finished, StopScanner
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import END_OF_TURN
from tuneforge.models.llamacpp import open_gguf

MAX_CONTEXT = 8192


class LlamaCppEngine:
    name = "llama.cpp"

    def __init__(self, gguf: Path, threads: int, context_length: int) -> None:
        self.llm: Any = open_gguf(gguf, n_ctx=min(context_length, MAX_CONTEXT), n_threads=threads)
        self.stop_ids = {self.llm.token_eos()} | set(
            self.llm.tokenize(END_OF_TURN.encode(), add_bos=False, special=True)
        )
        self.memory_bytes = gguf.stat().st_size
        self.lock = threading.Lock()
        #: Held for a whole answer: the server says "queued" to a request that finds it taken.
        self.exclusive_lock = self.lock

    def stream(
        self,
        text: str,
        params: GenerationParams,
        cancelled: threading.Event,
        adapter: str | None = None,
    ) -> Generator[Event, None, None]:
        if adapter is not None:
            raise KeyError("the llama.cpp engine serves base models only")
        with self.lock:
            prompt = self.llm.tokenize(text.encode(), add_bos=False, special=True)
            room = self.llm.n_ctx() - len(prompt)
            if room <= 0:
                raise ValueError(
                    f"The conversation holds {len(prompt)} tokens, more than the model's "
                    f"context of {self.llm.n_ctx()}."
                )
            if params.seed is not None:
                self.llm.set_seed(params.seed)
            # Evaluate the whole prompt afresh: reusing the cached prefix of the previous request
            # changes the arithmetic slightly, and greedy answers would differ between requests.
            self.llm.reset()
            scanner = StopScanner(params.stop)
            pending = b""
            count = 0
            reason = "length"
            for token in self.llm.generate(
                prompt,
                temp=0.0 if params.greedy else params.temperature,
                top_k=params.top_k if not params.greedy else 1,
                top_p=params.top_p,
                min_p=0.0,  # Gemma's recommended sampling has none
                repeat_penalty=params.repetition_penalty,
                reset=True,
            ):
                if token in self.stop_ids:
                    reason = "stop"
                    break
                count += 1
                pending += self.llm.detokenize([token], special=False)
                try:
                    piece = scanner.feed(pending.decode("utf-8"))
                    pending = b""
                except UnicodeDecodeError:  # half of a multi-byte character
                    piece = ""
                if piece:
                    yield Delta(piece)
                if scanner.stopped:
                    reason = "stop"
                    break
                if cancelled.is_set() or count >= min(params.max_new_tokens, room):
                    break
            rest = scanner.flush()
            if rest:
                yield Delta(rest)
            yield Finished("stop" if reason == "stop" else "length", len(prompt), count)
