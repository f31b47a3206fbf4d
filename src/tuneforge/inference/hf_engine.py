"""The transformers engine: any model TuneForge can train, with several LoRA adapters over one
loaded base, switched per request.

Decoding is our own loop, one forward per token under the engine's lock. Two conversations on the
same model (the base and a fine-tune side by side) therefore take turns token by token and both
stream at once, instead of the second waiting for the first to finish.

The loop decodes a batch of prompts at once (`generate_many`, for evaluations; a chat is a batch
of one): the prompts are padded on the left, each row keeps its own positions, token picker
(its own seed), stop tokens and stop strings, and a row that has finished leaves the batch (its
cache rows are dropped), so the rest stop paying for it. Each row's answer is the one it gets
alone: greedy tokens are the same (up to float rounding in a near tie), and a sampled row draws
from its own seeded generator exactly as many times as alone.

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
from typing import Any, Literal, cast

import torch

from tuneforge.inference.engine import (
    Answer,
    Delta,
    Event,
    Finished,
    OnAnswer,
    StopScanner,
    check_many,
    no_images,
)
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import format_of_tokenizer
from tuneforge.models.loading import load_causal_lm, load_tokenizer, loading_lock
from tuneforge.models.vision import expand_text, vision_info

#: Most prompts decoded together: past this a CPU is compute-bound and a bigger batch only adds
#: padding; a GPU gains a little more, but an evaluation's few hundred samples fill it anyway.
MAX_BATCH = 16
#: Share of the memory available now that one batch's cache and activations may take.
BATCH_MEMORY_SHARE = 0.25


class _Row:
    """One prompt being answered: its tokens, its own token picker, its stop strings, the text
    shown so far."""

    def __init__(self, ids: list[int], params: GenerationParams, stop_ids: set[int]) -> None:
        self.prompt = ids
        self.params = params
        self.stop_ids = stop_ids
        self.pick = _picker(params)
        self.scanner = StopScanner(params.stop)
        self.generated: list[int] = []
        self.shown = ""
        self.reason: Literal["stop", "length"] = "length"
        self.done = False

    def take(self, logits: torch.Tensor, tokenizer: Any) -> str:
        """Pick the next token from its `logits` [1, vocabulary]; the new text safe to show."""
        seen = cast(torch.LongTensor, torch.tensor([self.prompt + self.generated]))
        token = self.pick(seen, logits)
        if token in self.stop_ids:
            self.reason, self.done = "stop", True
            return ""
        self.generated.append(token)
        self.done = len(self.generated) >= self.params.max_new_tokens
        decoded = str(tokenizer.decode(self.generated, skip_special_tokens=True))
        if decoded.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return ""
        piece = self.scanner.feed(decoded[len(self.shown) :])
        self.shown = decoded
        if self.scanner.stopped:
            self.reason, self.done = "stop", True
        return piece

    def finish(self) -> Generator[Event, None, None]:
        rest = self.scanner.flush()
        if rest:
            yield Delta(rest)
        yield Finished(self.reason, len(self.prompt), len(self.generated))


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
        self.pad_id = self.tokenizer.pad_token_id or 0
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
            with loading_lock:  # only a real load waits for other models' loads
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
        self._check_adapter(adapter)
        ids = self._encode(text, images)
        for _, event in self._decode([ids], [params], [images], cancelled, adapter):
            yield event

    def generate_many(
        self,
        texts: Sequence[str],
        params: Sequence[GenerationParams],
        cancelled: threading.Event,
        adapter: str | None = None,
        images: Sequence[Sequence[bytes]] | None = None,
        on_answer: OnAnswer | None = None,
    ) -> list[Answer]:
        """The answers to `texts`, each with its own `params` (and `images`), decoded in
        batches of prompts of similar length (`batch_size`); `on_answer` hears each answer as
        it completes. A cancelled batch ends its answers where they are."""
        shown = check_many(texts, params, images)
        self._check_adapter(adapter)
        encoded = [self._encode(text, shown[i]) for i, text in enumerate(texts)]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        answers: dict[int, Answer] = {}
        if not texts:
            return []
        size = self.batch_size(len(encoded[order[-1]]), max(p.max_new_tokens for p in params))
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            parts: dict[int, list[str]] = {i: [] for i in chunk}
            events = self._decode(
                [encoded[i] for i in chunk],
                [params[i] for i in chunk],
                [shown[i] for i in chunk],
                cancelled,
                adapter,
            )
            for slot, event in events:
                index = chunk[slot]
                if isinstance(event, Delta):
                    parts[index].append(event.text)
                    continue
                answers[index] = Answer("".join(parts[index]), event)
                if on_answer is not None:
                    on_answer(index, answers[index])
        return [answers[i] for i in range(len(texts))]

    def batch_size(self, prompt_tokens: int, max_new_tokens: int) -> int:
        """How many prompts of up to `prompt_tokens` tokens to decode together, each answered
        in up to `max_new_tokens`: as many as `BATCH_MEMORY_SHARE` of the memory available now
        holds (each row's key-value cache over the whole length, its prompt's activations, its
        logits), at least 1 and at most `MAX_BATCH`."""
        import psutil

        text = self.model.config.get_text_config()
        size = torch.finfo(self.dtype).bits // 8
        cache, activations = 0, 0
        for layer in _layers(text):  # a heterogeneous config (Gemma 4) sizes each layer
            heads = layer.num_attention_heads
            head_dim = getattr(layer, "head_dim", None) or layer.hidden_size // heads
            kv_heads = getattr(layer, "num_key_value_heads", None) or heads
            cache += 2 * kv_heads * head_dim * size
            activations = max(activations, (layer.intermediate_size * 3 + heads * prompt_tokens))
        per_row = (prompt_tokens + max_new_tokens) * cache + prompt_tokens * activations * size
        per_row += text.vocab_size * 4 * 2  # the last position's logits, in fp32, and a copy
        if self.device.startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            available = int(free)
        else:
            available = int(psutil.virtual_memory().available)
        return max(1, min(MAX_BATCH, int(available * BATCH_MEMORY_SHARE) // int(per_row)))

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.adapters:
            raise KeyError(f"adapter {adapter!r} is not loaded")

    def _encode(self, text: str, images: Sequence[bytes]) -> list[int]:
        """The prompt's token ids, each image placeholder expanded into the image's tokens."""
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
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _decode(
        self,
        prompts: Sequence[list[int]],
        params: Sequence[GenerationParams],
        images: Sequence[Sequence[bytes]],
        cancelled: threading.Event,
        adapter: str | None,
    ) -> Generator[tuple[int, Event], None, None]:
        """Decode `prompts` together, yielding (the prompt's position, its next event) until
        every prompt has finished (or `cancelled` is set between two forwards)."""
        rows = [_Row(ids, p, self.stop_ids) for ids, p in zip(prompts, params, strict=True)]
        width = max(len(ids) for ids in prompts)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for number, prompt in enumerate(prompts):
            ids[number, width - len(prompt) :] = torch.tensor(prompt)
            mask[number, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
        first = self._image_inputs(ids, images)
        step_ids, mask = ids.to(self.device), mask.to(self.device)
        active = list(range(len(rows)))  # the rows still in the batch, in batch order
        cache = None
        while active and not cancelled.is_set():
            with self.lock, torch.inference_mode(), self.using(adapter):
                out = self.model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                    **first,
                )
            cache, first = out.cache, {}
            logits = out.logits[:, -1, :].float().cpu()
            kept: list[int] = []
            for slot, number in enumerate(active):
                row = rows[number]
                piece = row.take(logits[slot : slot + 1], self.tokenizer)
                if piece:
                    yield number, Delta(piece)
                if row.done:
                    for event in row.finish():
                        yield number, event
                else:
                    kept.append(slot)
            if not kept:
                return
            if len(kept) < len(active):
                keep = torch.tensor(kept, device=self.device)
                cache.batch_select_indices(keep)
                mask, positions = mask[keep], positions[keep]
            active = [active[slot] for slot in kept]
            last = [rows[number].generated[-1] for number in active]
            step_ids = torch.tensor(last, dtype=torch.long, device=self.device).unsqueeze(-1)
            ones = torch.ones((len(active), 1), dtype=torch.long, device=self.device)
            mask = torch.cat([mask, ones], dim=-1)
            positions = positions[:, -1:] + 1
        for number in active:  # cancelled: each unfinished answer ends where it is
            for event in rows[number].finish():
                yield number, event

    def _image_inputs(self, ids: torch.Tensor, images: Sequence[Sequence[bytes]]) -> dict[str, Any]:
        """What the first forward takes besides the ids of a batch (a row per prompt, the
        prompt's images in `images`): the images' pixels, in row order, and the token types
        that mark their soft tokens (nothing when no prompt has an image)."""
        every = [image for row in images for image in row]
        if not every or self.vision is None:
            return {}
        from tuneforge.models.vision_inputs import pixel_inputs, token_type_inputs

        for row, pictures in zip(ids, images, strict=True):
            found = int((row == self.vision.image_token_id).sum())
            needed = sum(self.vision.soft_tokens(image) for image in pictures)
            if found != needed:
                raise ValueError(
                    f"The prompt holds {found} image tokens where {len(pictures)} image(s) "
                    f"need {needed}."
                )
        inputs = pixel_inputs(every, self.path)
        pixels = inputs.pop("pixel_values").to(self.device, self.dtype)
        types = token_type_inputs(ids, self.vision)
        return {"pixel_values": pixels} | {
            k: v.to(self.device) for k, v in (inputs | types).items()
        }


def _layers(text: Any) -> list[Any]:
    """The configs of a text model's layers: each its own in a heterogeneous config, else the
    model's own, once per layer."""
    if getattr(text, "is_heterogeneous", False):
        return list(text.per_layer_config)
    return [text] * text.num_hidden_layers


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
