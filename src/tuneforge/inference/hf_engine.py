"""The transformers engine: any model TuneForge can train, with several LoRA adapters over one
loaded base, switched per request.

Decoding is our own loop, one forward per token under the engine's lock. Two conversations on the
same model (the base and a fine-tune side by side) therefore take turns token by token and both
stream at once, instead of the second waiting for the first to finish.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import torch

from tuneforge.inference.engine import Delta, Event, Finished, StopScanner
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import END_OF_TURN
from tuneforge.models.loading import load_causal_lm, load_tokenizer


class TransformersEngine:
    name = "transformers"

    def __init__(self, path: Path, device: str = "cpu", dtype: torch.dtype | None = None) -> None:
        # fp32 on a CPU: bf16 matrix products are slower there unless the CPU has AMX.
        self.dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        self.device = device
        self.model: Any = load_causal_lm(path, self.dtype, device)
        self.tokenizer = load_tokenizer(path)
        stops = [self.tokenizer.convert_tokens_to_ids(t) for t in (END_OF_TURN, "<eos>")]
        self.stop_ids = {t for t in stops if isinstance(t, int) and t >= 0}
        self.adapters: set[str] = set()
        self.lock = threading.Lock()
        self.memory_bytes = self._parameter_bytes()

    def _parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def add_adapter(self, name: str, path: Path) -> None:
        """Load the PEFT adapter in `path` under `name` (once)."""
        from peft import PeftModel

        with self.lock:
            if name in self.adapters:
                return
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.eval()
            self.adapters.add(name)
            self.memory_bytes = self._parameter_bytes()

    def using(self, adapter: str | None) -> contextlib.AbstractContextManager[None]:
        """Select `adapter` (None: the bare base) for the forwards inside. Call under the lock."""
        if not self.adapters:
            return contextlib.nullcontext()
        if adapter is None:
            return self.model.disable_adapter()  # type: ignore[no-any-return]
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def stream(
        self,
        text: str,
        params: GenerationParams,
        cancelled: threading.Event,
        adapter: str | None = None,
    ) -> Generator[Event, None, None]:
        if adapter is not None and adapter not in self.adapters:
            raise KeyError(f"adapter {adapter!r} is not loaded")
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        prompt_tokens = ids.shape[1]
        pick = _picker(params)
        scanner = StopScanner(params.stop)
        generated: list[int] = []
        shown = ""
        past = None
        step_input = ids.to(self.device)
        reason: str = "length"
        for _ in range(params.max_new_tokens):
            if cancelled.is_set():
                break
            with self.lock, torch.inference_mode(), self.using(adapter):
                out = self.model(input_ids=step_input, cache=past, use_cache=True)
            past = out.cache
            seen = cast(torch.LongTensor, torch.tensor([ids[0].tolist() + generated]))
            token = pick(seen, out.logits[:, -1, :].float().cpu())
            if token in self.stop_ids:
                reason = "stop"
                break
            generated.append(token)
            decoded = str(self.tokenizer.decode(generated, skip_special_tokens=True))
            if decoded.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                step_input = torch.tensor([[token]], device=self.device)
                continue
            piece = scanner.feed(decoded[len(shown) :])
            shown = decoded
            if piece:
                yield Delta(piece)
            if scanner.stopped:
                reason = "stop"
                break
            step_input = torch.tensor([[token]], device=self.device)
        rest = scanner.flush()
        if rest:
            yield Delta(rest)
        yield Finished("stop" if reason == "stop" else "length", prompt_tokens, len(generated))


def _picker(params: GenerationParams) -> Any:
    """A function (tokens so far, next-token logits) -> the chosen token id."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.greedy:

        def greedy(seen: torch.LongTensor, logits: torch.FloatTensor) -> int:
            return int(processors(seen, logits).argmax(dim=-1).item())

        return greedy
    processors.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k:
        processors.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        processors.append(TopPLogitsWarper(params.top_p))
    generator = torch.Generator()
    if params.seed is not None:
        generator.manual_seed(params.seed)
    else:
        generator.seed()

    def sample(seen: torch.LongTensor, logits: torch.FloatTensor) -> int:
        probs = torch.softmax(processors(seen, logits), dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator).item())

    return sample
