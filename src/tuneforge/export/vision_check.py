"""Does a vision GGUF export see like the model it came from? An image prompt through llama.cpp's
multimodal path (the text GGUF with its `mmproj` file, through llama-cpp-python's `mtmd`
bindings, as its `MTMDChatHandler` drives them) next to transformers.

Both sides read the same conversation: one image and a question, rendered with Gemma's template.
transformers gets the processor's ids (each `<start_of_image>` expanded into the image's soft
tokens) and the image processor's pixels; llama.cpp gets the same text with its media marker
where the image stands (mtmd frames it with `<start_of_image>` ... `<end_of_image>`, exactly as
the processor does) and the image's PNG bytes. The image is drawn at the encoder's own size, so
neither side's resizing changes a pixel and any difference is the conversion's. The text around
the image must tokenize to the same ids on both sides (checked), then, as in `gguf_check`,
transformers' greedy answer is compared step by step with llama.cpp's choices given the same
answer so far (`forced`), and both greedy answers are compared (`greedy`).

torch, transformers and llama.cpp are imported inside the functions.
"""

from __future__ import annotations

import ctypes
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.export.gguf_check import CONTEXT, NEAR_TIE, agreement
from tuneforge.models.chat_template import GEMMA_3, ChatFormat
from tuneforge.models.llamacpp import decode_image_causally, media_text, open_gguf
from tuneforge.models.vision import VisionInfo, expand_images, expand_text, vision_info

QUESTION = "What colour is the square in this picture?"
#: The names a model reads its token types by (Gemma 3's, Gemma 4's).
TOKEN_TYPES = ("token_type_ids", "mm_token_type_ids")


def sample_image(size: int) -> bytes:
    """A PNG of `size` x `size`: a red square on a blue-green gradient (deterministic)."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size, dtype=np.float32)
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[..., 1] = ramp[None, :].astype(np.uint8)
    pixels[..., 2] = ramp[::-1, None].astype(np.uint8)
    quarter = size // 4
    pixels[quarter : 3 * quarter, quarter : 3 * quarter] = (220, 30, 30)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_prompt(question: str = QUESTION, chat: ChatFormat = GEMMA_3) -> str:
    """The conversation (one image, then `question`) in `chat`'s format (Gemma 3's by default),
    generation prompt and `<bos>` included; the image stands as its placeholder
    (`<start_of_image>`; Gemma 4: `<|image|>`)."""
    content = [{"type": "image"}, {"type": "text", "text": question}]
    return chat.render([{"role": "user", "content": content}], add_generation_prompt=True)


@dataclass(frozen=True)
class ReferenceAnswer:
    """transformers' greedy answer to the image prompt."""

    prompt_ids: list[int]
    tokens: list[int]
    #: The gap between the best and second-best logit at each step (small: a near tie).
    gaps: list[float]
    #: The logits after the prompt (the first answer token's), and after the same prompt with
    #: the other image: how far an image moves them.
    logits: Any
    other_logits: Any


def image_inputs(model_dir: Path, image: bytes, prompt: str) -> dict[str, Any]:
    """transformers' inputs for `prompt` with `image`: the processor's token ids (the image
    expanded into its soft tokens), pixel values and token types."""
    import torch
    from PIL import Image

    info = vision_info(model_dir)
    if info is None:
        raise ValueError(f"{model_dir.name} is not a vision model.")
    if info.variable:
        return _gemma4_inputs(model_dir, info, image, prompt)
    processor = _processor(str(model_dir))
    picture = Image.open(io.BytesIO(image)).convert("RGB")
    pixels = processor.image_processor(images=[picture], return_tensors="pt")["pixel_values"]
    text = expand_images(prompt, info.tokens_per_image)
    ids = torch.tensor([processor.tokenizer(text, add_special_tokens=False)["input_ids"]])
    types = (ids == info.image_token_id).long()
    return {"input_ids": ids, "pixel_values": pixels.float(), "token_type_ids": types}


def _gemma4_inputs(model_dir: Path, info: VisionInfo, image: bytes, prompt: str) -> dict[str, Any]:
    """Gemma 4's inputs, through the model's own image processor and tokenizer (transformers'
    `AutoProcessor` also loads Gemma 4's video processor, which needs torchvision): the ids with
    the image's own soft tokens, its patches and their positions, and the token types; equal to
    `Gemma4Processor`'s (`tests/models/test_gemma4_vision.py`)."""
    import torch

    from tuneforge.models.tokenizer import model_tokenizer
    from tuneforge.models.vision_inputs import pixel_inputs, token_type_inputs

    tokenizer = model_tokenizer(model_dir)
    text = expand_text(prompt, info, [image])
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False).ids])
    return {"input_ids": ids, **pixel_inputs([image], model_dir), **token_type_inputs(ids, info)}


@functools.lru_cache(maxsize=2)
def _processor(model_dir: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_dir)  # type: ignore[no-untyped-call]


def greedy_answer(model: Any, inputs: dict[str, Any], n: int) -> tuple[list[int], list[float], Any]:
    """`model`'s first `n` greedy tokens after `inputs` (see `image_inputs`), the gap between
    its two best logits at each step, and its logits for the first token (float32 numpy).
    Step by step rather than `generate`, so an end-of-turn token does not stop it."""
    import torch

    tokens: list[int] = []
    gaps: list[float] = []
    with torch.inference_mode():
        output = model(**inputs, **generation_masks(model, inputs), use_cache=True)
        first = output.logits[0, -1].float().numpy()
        for step in range(n):
            top = output.logits[0, -1].float().topk(2)
            tokens.append(int(top.indices[0]))
            gaps.append(float(top.values[0] - top.values[1]))
            if step + 1 < n:
                ids = torch.tensor([tokens[-1:]])
                types = {key: torch.zeros_like(ids) for key in inputs if key in TOKEN_TYPES}
                output = model(input_ids=ids, cache=output.cache, use_cache=True, **types)
    return tokens, gaps, first


def generation_masks(model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """For a Gemma 4 prompt (`mm_token_type_ids`), the attention masks transformers' `generate`
    builds (`create_masks_for_generate`), as `attention_mask`; else none. A Gemma 4 with
    bidirectional vision attention (the encoder-free 12B, the 31B) lets an image's tokens see
    each other in its sliding-window layers only when it generates, as llama.cpp does; its
    plain forward call (transformers 5.24) does so in every layer."""
    import torch

    types = inputs.get("mm_token_type_ids")
    build = getattr(model, "create_masks_for_generate", None)
    if types is None or build is None:
        return {}
    ids = inputs["input_ids"]
    width = model.config.get_text_config().hidden_size
    shape = torch.zeros((*ids.shape, width), dtype=model.dtype)
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    return {"attention_mask": build(model.config, shape, None, None, positions, types)}


def reference_answer(
    model_dir: Path, image: bytes, other: bytes, n: int, prompt: str
) -> ReferenceAnswer:
    """transformers' first `n` greedy tokens (float32) after `prompt` with `image`, and its
    first logits with `image` and with `other`."""
    import torch

    from tuneforge.models.loading import load_causal_lm

    model: Any = load_causal_lm(model_dir, torch.float32)
    inputs = image_inputs(model_dir, image, prompt)
    tokens, gaps, logits = greedy_answer(model, inputs, n)
    other_inputs = inputs | {"pixel_values": image_inputs(model_dir, other, prompt)["pixel_values"]}
    _, _, other_logits = greedy_answer(model, other_inputs, 1)
    return ReferenceAnswer(inputs["input_ids"][0].tolist(), tokens, gaps, logits, other_logits)


class _Multimodal:
    """A text GGUF and its projector loaded in llama.cpp, the image prompt evaluated."""

    def __init__(
        self,
        model: Path,
        projector: Path,
        threads: int,
        n_ctx: int,
        image_tokens: tuple[int, int] = (-1, -1),
        causal_images: bool = False,
    ) -> None:
        """`image_tokens`: the fewest and most soft tokens an image may become (-1: llama.cpp's
        defaults, which for Gemma 4 are not the model's own budget, see `check_image`).
        `causal_images`: the decoder reads an image's tokens causally (`causal_images_of`)."""
        self.causal_images = causal_images
        from llama_cpp import mtmd_cpp
        from llama_cpp._utils import suppress_stdout_stderr

        self.mtmd = mtmd_cpp
        self.quiet = suppress_stdout_stderr
        self.llm: Any = open_gguf(model, n_ctx=n_ctx, n_threads=threads, logits_all=True)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = threads
        params.image_min_tokens, params.image_max_tokens = image_tokens
        with self.quiet(disable=False):
            self.ctx = mtmd_cpp.mtmd_init_from_file(str(projector).encode(), self.llm.model, params)
        if not self.ctx:
            self.llm.close()
            raise ProjectorNotLoaded(f"llama.cpp could not load the projector {projector.name}.")

    def close(self) -> None:
        if self.ctx:
            self.mtmd.mtmd_free(self.ctx)
            self.ctx = None
        self.llm.close()

    def prefill(self, prompt: str, image: bytes) -> list[int]:
        """Evaluate `prompt` (its `<start_of_image>` standing for `image`) from an empty
        context; returns the ids of its text chunks (the image's places left out)."""
        with self.quiet(disable=False):  # mtmd prints each step to stderr
            return self._prefill(prompt, image)

    def _prefill(self, prompt: str, image: bytes) -> list[int]:
        import llama_cpp

        mtmd = self.mtmd
        text = media_text(prompt, mtmd.mtmd_default_marker().decode("utf-8")).encode("utf-8")
        data = (ctypes.c_uint8 * len(image)).from_buffer(bytearray(image))
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.ctx, data, len(image), False)
        if not bitmap:
            raise ValueError("llama.cpp could not decode the test image.")
        chunks = mtmd.mtmd_input_chunks_init()
        text_ids: list[int] = []
        try:
            source = mtmd.mtmd_input_text()
            source.text, source.text_len = text, len(text)
            source.add_special, source.parse_special = False, True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            if mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(source), bitmaps, 1) != 0:
                raise ValueError("llama.cpp could not tokenize the image prompt.")
            self.llm.reset()
            self.llm._ctx.kv_cache_clear()
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    ids = [int(pointer[j]) for j in range(count.value)]
                    text_ids += ids
                    self.llm.eval(ids)
                    continue
                if self.causal_images:
                    decode_image_causally(mtmd, self.ctx, self.llm, chunk)
                    continue
                past = llama_cpp.llama_pos(0)
                status = mtmd.mtmd_helper_eval_chunk_single(
                    self.ctx,
                    self.llm._ctx.ctx,
                    chunk,
                    llama_cpp.llama_pos(self.llm.n_tokens),
                    llama_cpp.llama_seq_id(0),
                    self.llm.n_batch,
                    False,
                    ctypes.byref(past),
                )
                if status != 0:
                    raise ValueError(f"llama.cpp could not encode the image (status {status}).")
                self.llm.n_tokens = past.value
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)
        return text_ids

    def last_choice(self) -> int:
        import numpy as np

        return int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))

    def logits(self, prompt: str, image: bytes) -> Any:
        """llama.cpp's logits after the prompt (float32 numpy)."""
        import numpy as np

        self.prefill(prompt, image)
        return np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)

    def greedy(self, prompt: str, image: bytes, n: int) -> tuple[list[int], list[int], Any]:
        """The prompt's text ids, llama.cpp's first `n` greedy tokens and its logits after the
        prompt."""
        import numpy as np

        text_ids = self.prefill(prompt, image)
        logits = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
        tokens: list[int] = []
        for _ in range(n):
            tokens.append(self.last_choice())
            if len(tokens) < n:
                self.llm.eval(tokens[-1:])
        return text_ids, tokens, logits

    def forced(self, prompt: str, image: bytes, answer: list[int]) -> list[int]:
        """llama.cpp's best token at each step of `answer`, given `answer`'s tokens before it."""
        import numpy as np

        self.prefill(prompt, image)
        start = self.llm.n_tokens - 1
        if len(answer) > 1:
            self.llm.eval(answer[:-1])
        scores = np.asarray(self.llm.scores[start : start + len(answer)])
        return [int(i) for i in scores.argmax(axis=1)]


class ProjectorNotLoaded(Exception):
    """llama.cpp refused the projector file."""


@dataclass(frozen=True)
class ImageCheck:
    """How the GGUF pair answers the image prompt next to transformers (`n` tokens).

    `greedy`: leading greedy tokens both generate alike; `forced`: steps at which llama.cpp's
    best token, given transformers' answer so far, is transformers' (or differs at a near tie,
    counted in `near_ties`); `same_prompt`: the text around the image tokenized alike.
    `logit_diff`: the largest difference between llama.cpp's and transformers' logits after
    the prompt; `image_effect`: the largest difference between transformers' logits there with
    the test image and with its negative; `effect_diff`: the largest difference between how
    llama.cpp's logits and how transformers' move from the negative to the image. A projector
    that loses the image moves llama.cpp's logits otherwise: `effect_diff` near or above
    `image_effect`. Rounding in a quantized text model shifts `logit_diff` but moves both
    images' logits alike, so `effect_diff` stays small. `image_effect` near zero means the
    model ignores its images (then the check cannot tell, and says so).
    """

    greedy: int
    forced: int
    near_ties: int
    n: int
    same_prompt: bool
    logit_diff: float
    image_effect: float
    effect_diff: float
    reference: list[int]
    llama_cpp: list[int]


def check_image(
    model: Path,
    projector: Path,
    model_dir: Path,
    *,
    n: int = 16,
    threads: int = 2,
    image: bytes | None = None,
    prompt: str | None = None,
) -> ImageCheck:
    """Compare llama.cpp (`model` + `projector`) with transformers (`model_dir`) on an image
    prompt. Raises `ProjectorNotLoaded` when llama.cpp refuses the projector."""
    import numpy as np

    info = vision_info(model_dir)
    if info is None:
        raise ValueError(f"{model_dir.name} is not a vision model.")
    from tuneforge.models.loading import model_format

    picture = image if image is not None else sample_image(info.image_size)
    text = prompt or image_prompt(chat=model_format(model_dir))
    want = reference_answer(model_dir, picture, negative(picture), n, text)
    room = max(CONTEXT, len(want.prompt_ids) + n + 8)
    engine = _Multimodal(
        model, projector, threads, room, _token_range(info), causal_images_of(model_dir)
    )
    try:
        text_ids, found, logits = engine.greedy(text, picture, n)
        forced = engine.forced(text, picture, want.tokens)
        other_logits = engine.logits(text, negative(picture))
    finally:
        engine.close()
    expected_text = [i for i in want.prompt_ids if i != info.image_token_id]
    agreed, ties = 0, 0
    for a, b, gap in zip(want.tokens, forced, want.gaps, strict=True):
        if a == b:
            agreed += 1
        elif gap < NEAR_TIE:
            agreed, ties = agreed + 1, ties + 1
    return ImageCheck(
        greedy=agreement(want.tokens, found),
        forced=agreed,
        near_ties=ties,
        n=n,
        same_prompt=text_ids == expected_text,
        logit_diff=float(np.abs(logits - want.logits).max()),
        image_effect=float(np.abs(want.other_logits - want.logits).max()),
        effect_diff=float(
            np.abs((logits - other_logits) - (want.logits - want.other_logits)).max()
        ),
        reference=want.tokens,
        llama_cpp=found,
    )


def causal_images_of(model_dir: Path) -> bool:
    """Whether the decoder in `model_dir` reads an image's tokens causally: a Gemma 4 whose
    `use_bidirectional_attention` is unset (E2B, E4B; transformers masks their image tokens as
    it masks text). llama.cpp's mtmd helper lets every Gemma 4 image token see the others, so
    for these the check feeds the image's embeddings itself (`decode_image_causally`)."""
    import json

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") or {}
    return config.get("model_type") == "gemma4" and not text.get("use_bidirectional_attention")


def _token_range(info: VisionInfo) -> tuple[int, int]:
    """The soft tokens llama.cpp may make of the check's image. Gemma 3's are fixed. A Gemma 4
    image becomes as many as its processor allows (`tokens_per_image`); llama.cpp resizes it
    within a range of its own (it grows smaller images to a minimum), so the range is narrowed
    to the check image's own count, which transformers gives it at the same size."""
    if not info.variable:
        return (-1, -1)
    side = info.image_size // (info.patch_size * info.pooling)
    return (side * side, info.tokens_per_image)


def negative(image: bytes) -> bytes:
    """The PNG of `image` with every colour inverted: the other image of the check."""
    from PIL import Image, ImageOps

    buffer = io.BytesIO()
    ImageOps.invert(Image.open(io.BytesIO(image)).convert("RGB")).save(buffer, format="PNG")
    return buffer.getvalue()
