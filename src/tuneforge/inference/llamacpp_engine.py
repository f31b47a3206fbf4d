"""The llama.cpp engine (the `gguf` extra): GGUF models, the fast path on a CPU.

llama.cpp keeps one KV cache per loaded model, so one generation runs at a time per model; the
model is small and fast enough that taking turns per request is the right trade here.

LoRA fine-tunes of the loaded base share its weights: each one's GGUF adapter (made by
`fast_path`) is loaded once (`add_adapter`, a few MB) and the request's own adapter, or none for
the base, is set on the context before its prompt is evaluated, under the lock, so one request
never runs with another's adapter.

A GGUF exported with its image projector (`mmproj*.gguf`) reads images through llama.cpp's
multimodal library (mtmd), opened by llama-cpp-python's `MTMDChatHandler`: the prompt is split
into text and image chunks (each image placeholder of our text becomes mtmd's media marker,
`models.llamacpp.media_text`; mtmd frames the image's embeddings with the model's image
tokens), the chunks are evaluated in order, and tokens are then sampled from where the prompt
ends, as for text. A Gemma 4 image becomes at most llama.cpp's default 280 soft tokens.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from tuneforge.errors import EngineUnavailable
from tuneforge.inference.engine import (
    Answer,
    Delta,
    Event,
    Finished,
    OnAnswer,
    check_many,
    no_images,
)
from tuneforge.inference.llamacpp_batch import Answering, decode_together, together
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import GEMMA_3, GEMMA_4
from tuneforge.models.llamacpp import media_text, open_gguf

MAX_CONTEXT = 8192


class LlamaCppEngine:
    name = "llama.cpp"

    def __init__(
        self, gguf: Path, threads: int, context_length: int, mmproj: Path | None = None
    ) -> None:
        self.llm: Any = open_gguf(gguf, n_ctx=min(context_length, MAX_CONTEXT), n_threads=threads)
        # The end of a turn: `<end_of_turn>`, or Gemma 4's `<turn|>` (whichever is one token).
        ends = [
            self.llm.tokenize(token.encode(), add_bos=False, special=True)
            for token in (GEMMA_3.end_of_turn, GEMMA_4.end_of_turn)
        ]
        self.stop_ids = {self.llm.token_eos()} | {ids[0] for ids in ends if len(ids) == 1}
        self.memory_bytes = gguf.stat().st_size
        self.vision: Any = None
        if mmproj is not None:
            from llama_cpp.llama_chat_format import MTMDChatHandler

            self.vision = MTMDChatHandler(clip_model_path=str(mmproj), verbose=False, use_gpu=False)
            self.vision._init_mtmd_context(self.llm)
            self.memory_bytes += mmproj.stat().st_size
        self.lock = threading.Lock()
        #: Held for a whole answer: the server says "queued" to a request that finds it taken.
        self.exclusive_lock = self.lock
        #: GGUF LoRA adapters loaded on the base, by name (freed with the model).
        self.adapters: dict[str, Any] = {}

    def add_adapter(self, name: str, path: Path) -> None:
        """Load the GGUF LoRA adapter at `path` under `name`, once."""
        from llama_cpp import llama_cpp

        with self.lock:
            if name in self.adapters:
                return
            adapter = llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode())
            if not adapter:
                raise EngineUnavailable(f"llama.cpp could not load the LoRA adapter {path.name}.")
            self.adapters[name] = adapter
            self.memory_bytes += path.stat().st_size

    def _select(self, adapter: str | None, ctx: Any = None) -> None:
        """Run the next evaluation of the context `ctx` (the chat's by default) with `adapter`
        alone, or with none (call under the lock)."""
        from llama_cpp import llama_cpp

        ctx = ctx or self.llm.ctx
        if adapter is None:
            chosen = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            if adapter not in self.adapters:
                raise KeyError(f"the adapter {adapter} is not loaded")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[adapter])
            scales = (ctypes.c_float * 1)(1.0)
            chosen = llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
        if chosen != 0:
            raise EngineUnavailable("llama.cpp could not set the fine-tune's LoRA adapter.")

    def stream(
        self,
        text: str,
        params: GenerationParams,
        cancelled: threading.Event,
        adapter: str | None = None,
        images: Sequence[bytes] = (),
    ) -> Generator[Event, None, None]:
        if images and self.vision is None:
            raise no_images("This GGUF model (exported without its image projector)")
        with self.lock:
            self._select(adapter)
            if images:
                prompt = self._evaluate_with_images(text, images)
            else:
                prompt = self.llm.tokenize(text.encode(), add_bos=False, special=True)
                # Evaluate the whole prompt afresh: reusing the cached prefix of the previous
                # request changes the arithmetic slightly, and greedy answers would differ
                # between requests.
                self.llm.reset()
            room = self.llm.n_ctx() - len(prompt)
            if room <= 0:
                raise ValueError(
                    f"The conversation holds {len(prompt)} tokens, more than the model's "
                    f"context of {self.llm.n_ctx()}."
                )
            if params.seed is not None:
                self.llm.set_seed(params.seed)
            answering = Answering(self.llm, params.stop)
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
                if piece := answering.add(token):
                    yield Delta(piece)
                if answering.stopped:
                    reason = "stop"
                    break
                if cancelled.is_set() or answering.count >= min(params.max_new_tokens, room):
                    break
            if rest := answering.rest():
                yield Delta(rest)
            yield Finished("stop" if reason == "stop" else "length", len(prompt), answering.count)

    def generate_many(
        self,
        texts: Sequence[str],
        params: Sequence[GenerationParams],
        cancelled: threading.Event,
        adapter: str | None = None,
        images: Sequence[Sequence[bytes]] | None = None,
        on_answer: OnAnswer | None = None,
    ) -> list[Answer]:
        """The answers to `texts`, each with its own `params` (and `images`); `on_answer` hears
        each as it completes. Greedy answers to text alone are decoded together
        (`llamacpp_batch`); the others (sampled, with a repetition penalty or with images) one
        after another, as a chat's."""
        shown = check_many(texts, params, images)
        answers: dict[int, Answer] = {}

        def answered(index: int, answer: Answer) -> None:
            answers[index] = answer
            if on_answer is not None:
                on_answer(index, answer)

        grouped = [i for i, p in enumerate(params) if together(p) and not shown[i]]
        if grouped:
            prompts = [
                (i, self.llm.tokenize(texts[i].encode(), add_bos=False, special=True), params[i])
                for i in grouped
            ]
            with self.lock:
                decode_together(
                    self.llm,
                    self.stop_ids,
                    lambda ctx: self._select(adapter, ctx),
                    prompts,
                    cancelled,
                    answered,
                )
        for i in sorted(set(range(len(texts))) - set(grouped)):
            parts: list[str] = []
            for event in self.stream(texts[i], params[i], cancelled, adapter, shown[i]):
                if isinstance(event, Delta):
                    parts.append(event.text)
                else:
                    answered(i, Answer("".join(parts), event))
        return [answers[i] for i in range(len(texts))]

    def _evaluate_with_images(self, text: str, images: Sequence[bytes]) -> list[int]:
        """Evaluate the prompt's text and image chunks through mtmd (call under the lock); the
        prompt's token ids as `Llama.generate` then continues them (image positions included)."""
        mtmd = self.vision._mtmd_cpp
        encoded = media_text(text, mtmd.mtmd_default_marker().decode()).encode()
        bitmaps = [self.vision._create_bitmap_from_bytes(bytes(image)) for image in images]
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            source = mtmd.mtmd_input_text()
            source.text = encoded
            source.text_len = len(encoded)
            source.add_special = False  # the text starts with its own <bos>
            source.parse_special = True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            if mtmd.mtmd_tokenize(
                self.vision.mtmd_ctx, chunks, ctypes.byref(source), array, len(bitmaps)
            ):
                raise ValueError("llama.cpp could not split the prompt into text and images.")
            self.llm.reset()
            self.llm._ctx.kv_cache_clear()
            for index in range(mtmd.mtmd_input_chunks_size(chunks)):
                self._evaluate_chunk(mtmd, mtmd.mtmd_input_chunks_get(chunks, index))
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        return list(self.llm.input_ids[: self.llm.n_tokens].tolist())

    def _evaluate_chunk(self, mtmd: Any, chunk: Any) -> None:
        from llama_cpp import llama_cpp

        llm = self.llm
        size = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        if llm.n_tokens + size > llm.n_ctx():
            raise ValueError(
                f"The conversation holds more than the model's context of {llm.n_ctx()} tokens."
            )
        if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            count = ctypes.c_size_t()
            tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            llm.eval([tokens[i] for i in range(count.value)])
            return
        after = llama_cpp.llama_pos(0)
        if mtmd.mtmd_helper_eval_chunk_single(
            self.vision.mtmd_ctx,
            llm._ctx.ctx,
            chunk,
            llama_cpp.llama_pos(llm.n_tokens),
            llama_cpp.llama_seq_id(0),
            llm.n_batch,
            False,
            ctypes.byref(after),
        ):
            raise ValueError("llama.cpp could not read the image.")
        llm.n_tokens = after.value
