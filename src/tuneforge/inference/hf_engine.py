"""The transformers engine: any model TuneForge can train, with several LoRA adapters over one
loaded base, switched per request.

Decoding is our own loop, one forward per token under the engine's lock. Two conversations on the
same model (the base and a fine-tune side by side) therefore take turns token by token and both
stream at once, instead of the second waiting for the first to finish.

A vision model (a directory whose config has a `vision_config`) reads images: each image
placeholder of the text (Gemma 3's `<start_of_image>`, Gemma 4's `<|image|>`) becomes the image's
soft tokens (`expand_text`, as transformers' processor writes them: Gemma 3's fixed frame,
Gemma 4's count from each image's shape), and the first forward takes the images' pixel inputs
(through the model's own image processor: Gemma 4's patches come with their positions) and the
token types marking the image tokens, so the model attends to each image bidirectionally.
Fine-tuned adapters over a vision base see them too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from tuneforge.inference.engine import Delta, Event, Finished, StopScanner, no_images
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import format_of_tokenizer
from tuneforge.models.loading import load_causal_lm, load_tokenizer
from tuneforge.models.vision import expand_text, vision_info


class TransformersEngine:
    name = "transformers"

    def __init__(self, path: Path, device: str = "cpu", dtype: torch.dtype | None = None) -> None:
        # fp32 on a CPU: bf16 matrix products are slower there unless the CPU has AMX.
        self.dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        self.device = device
        self.path = path
        self.vision = vision_info(path)
        self.model: Any = load_causal_lm(path, self.dtype, device)
        self.tokenizer = load_tokenizer(path)
        self.chat = format_of_tokenizer(self.tokenizer)
        stops = [self.tokenizer.convert_tokens_to_ids(t) for t in self.chat.stop_tokens]
        unknown = self.tokenizer.unk_token_id
        self.stop_ids = {t for t in stops if isinstance(t, int) and t >= 0 and t != unknown}
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
        images: Sequence[bytes] = (),
    ) -> Generator[Event, None, None]:
        if adapter is not None and adapter not in self.adapters:
            raise KeyError(f"adapter {adapter!r} is not loaded")
        if images and self.vision is None:
            raise no_images("This model")
        if self.vision is not None and (images or self.vision.placeholder in text):
            marked = text.count(self.vision.placeholder)
            if marked != len(images):
                raise ValueError(
                    f"The prompt marks {marked} image(s) but {len(images)} came with it: their "
                    "image tokens would not match."
                )
            text = expand_text(text, self.vision, images)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        prompt_tokens = ids.shape[1]
        first = self._image_inputs(ids, images)
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
                out = self.model(
                    input_ids=step_input, cache=past, use_cache=True, logits_to_keep=1, **first
                )
            past, first = out.cache, {}
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

    def _image_inputs(self, ids: torch.Tensor, images: Sequence[bytes]) -> dict[str, Any]:
        """What the first forward takes besides the ids: the images' pixels and the token types
        that mark their soft tokens (nothing for a text-only prompt)."""
        if not images or self.vision is None:
            return {}
        from tuneforge.models.vision_inputs import pixel_inputs, token_type_inputs

        found = int((ids == self.vision.image_token_id).sum())
        needed = sum(self.vision.soft_tokens(image) for image in images)
        if found != needed:
            raise ValueError(
                f"The prompt holds {found} image tokens where {len(images)} image(s) need {needed}."
            )
        inputs = pixel_inputs(images, self.path)
        pixels = inputs.pop("pixel_values").to(self.device, self.dtype)
        types = token_type_inputs(ids, self.vision)
        return {"pixel_values": pixels} | {
            k: v.to(self.device) for k, v in (inputs | types).items()
        }


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
