"""The vLLM engine, for CUDA machines with vLLM installed (chosen automatically there).

Answers stream as vLLM makes them. Each answer is a request of the `LLMEngine` under vLLM's
offline `LLM` (`LLM.llm_engine`), driven the way `LLM.generate` drives it: `step()` moves every
running request on by a token and returns what each has new (`RequestOutputKind.DELTA`: the new
text and token ids only). The inference server runs each answer in a thread of its own and the
engine is not thread-safe, so `SharedSteps` lets those threads take turns at stepping it: the
answers running at once are decoded in one batch, as vLLM is made to. A cancelled answer is
aborted between two steps (`abort_request`), which frees its place in the batch at once.

Written against vLLM's V1 `LLMEngine`, the default since vLLM 0.8 (checked in vLLM's sources
from the first V1 releases to the 0.17 development line; the V0 engine of older releases has the
same calls): `add_request(request_id, prompt, params)` with a `{"prompt_token_ids": ...}`
prompt, `step()`, `abort_request([request_id])`, and outputs whose `request_id` is the one given
(releases that make request ids unique inside the engine keep the given one on their outputs
and for `abort_request`).

Fine-tuned adapters and conversations with images go through the transformers engine.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from tuneforge.errors import EngineUnavailable
from tuneforge.inference.engine import Delta, Event, Finished, StopScanner
from tuneforge.inference.params import GenerationParams

GPU_MEMORY_SHARE = 0.5


class VllmEngine:
    name = "vllm"

    def __init__(self, path: Path) -> None:
        from vllm import LLM

        from tuneforge.models.loading import model_format

        self.llm: Any = LLM(model=str(path), gpu_memory_utilization=GPU_MEMORY_SHARE)
        self.tokenizer: Any = self.llm.get_tokenizer()
        self.steps = SharedSteps(self.llm.llm_engine)
        self.end_of_turn = model_format(path).end_of_turn  # `<end_of_turn>`, Gemma 4's `<turn|>`
        self.memory_bytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))

    def stream(
        self,
        text: str,
        params: GenerationParams,
        cancelled: threading.Event,
        adapter: str | None = None,
        images: Sequence[bytes] = (),
    ) -> Generator[Event, None, None]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if adapter is not None:
            raise KeyError("the vLLM engine serves base and fully fine-tuned models only")
        if images:
            raise EngineUnavailable("The vLLM engine here answers text; images use transformers.")
        sampling = SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k or -1,
            max_tokens=params.max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            stop=[self.end_of_turn],
            seed=params.seed,
            output_kind=RequestOutputKind.DELTA,
        )
        # The text starts with its own `<bos>`: tokenized as the other engines do, without the
        # special tokens a text prompt would get from vLLM (a second `<bos>`).
        prompt = self.tokenizer.encode(text, add_special_tokens=False)
        scanner = StopScanner(params.stop)
        made = 0
        finish = None  # vLLM's reason, on the last output: "stop" (end of turn), "length"
        outputs = self.steps.run({"prompt_token_ids": prompt}, sampling, cancelled)
        try:
            for output in outputs:
                answer = output.outputs[0]
                made += len(answer.token_ids)
                finish = answer.finish_reason
                piece = scanner.feed(answer.text)
                if piece:
                    yield Delta(piece)
                if scanner.stopped:
                    break
        finally:
            outputs.close()  # aborts the request when it has not finished
        rest = scanner.flush()
        if rest:
            yield Delta(rest)
        stopped = scanner.stopped or finish == "stop"
        yield Finished("stop" if stopped else "length", len(prompt), made)


class SharedSteps:
    """Runs requests on one vLLM `LLMEngine` from many threads, decoded together.

    Only one thread at a time calls the engine (under `lock`). A thread that wants its
    request's next output and has none waiting runs one `step()` for every request, keeping the
    other requests' outputs for their threads; a thread that finds its outputs already made by
    another's step takes them without stepping. A thread steps only while its request is
    unfinished, so the engine always has a request to answer (a step of vLLM's engine, run in
    its own process, waits for one).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.waiting: dict[str, deque[Any]] = {}
        self.ids = itertools.count()

    def run(
        self, prompt: Any, sampling: Any, cancelled: threading.Event
    ) -> Generator[Any, None, None]:
        """Add a request and yield its `RequestOutput`s as the steps make them, until the last
        (`finished`). When `cancelled` is set, or the generator is closed before the end, the
        request is aborted."""
        request_id = f"tuneforge-{next(self.ids)}"
        mine: deque[Any] = deque()
        with self.lock:
            self.engine.add_request(request_id, prompt, sampling)
            self.waiting[request_id] = mine
        finished = False
        try:
            while not finished and not cancelled.is_set():
                with self.lock:
                    if not mine:
                        self._step()
                    ready = list(mine)
                    mine.clear()
                for output in ready:
                    finished = bool(output.finished)
                    yield output
        finally:
            with self.lock:
                del self.waiting[request_id]
                if not finished:
                    self.engine.abort_request([request_id])

    def _step(self) -> None:
        """One step of the engine (call under `lock`), each output kept for its request's
        thread (outputs of a request aborted meanwhile are dropped)."""
        for output in self.engine.step():
            queue = self.waiting.get(output.request_id)
            if queue is not None:
                queue.append(output)
