"""The vLLM engine, for CUDA machines with vLLM installed (chosen automatically there).

vLLM's offline `LLM` answers whole completions; the answer arrives as one piece. Fine-tuned
adapters and conversations with images go through the transformers engine.
"""

from __future__ import annotations

import threading
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
        self.end_of_turn = model_format(path).end_of_turn  # `<end_of_turn>`, Gemma 4's `<turn|>`
        self.memory_bytes = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        self.lock = threading.Lock()

    def stream(
        self,
        text: str,
        params: GenerationParams,
        cancelled: threading.Event,
        adapter: str | None = None,
        images: Sequence[bytes] = (),
    ) -> Generator[Event, None, None]:
        from vllm import SamplingParams

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
        )
        with self.lock:
            output = self.llm.generate([text], sampling, use_tqdm=False)[0]
        answer = output.outputs[0]
        scanner = StopScanner(params.stop)
        shown = scanner.feed(answer.text) + scanner.flush()
        if shown:
            yield Delta(shown)
        stopped = scanner.stopped or answer.finish_reason == "stop"
        yield Finished(
            "stop" if stopped else "length", len(output.prompt_token_ids), len(answer.token_ids)
        )
