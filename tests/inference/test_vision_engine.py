"""The transformers engine with images, on tiny-random-gemma3-vision: our decode loop answers an
image prompt exactly as transformers' `generate` does with the model's own processor, the image
adds its soft tokens and frame to the prompt, the pixels change the answer, and a text-only
model refuses images."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.images import png
from tuneforge.errors import InvalidInput
from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import render
from tuneforge.models.vision import image_tokens

pytestmark = pytest.mark.timeout(120)
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=8)
QUESTION = "Which colour is the square?"


def prompt(images: int) -> str:
    parts = [{"type": "image"}] * images + [{"type": "text", "text": QUESTION}]
    return render([{"role": "user", "content": parts}], add_generation_prompt=True)


def answer(engine: TransformersEngine, text: str, images: list[bytes]) -> tuple[str, Finished]:
    events = list(engine.stream(text, GREEDY, threading.Event(), None, images))
    done = events[-1]
    assert isinstance(done, Finished)
    return "".join(e.text for e in events if isinstance(e, Delta)), done


@pytest.fixture(scope="module")
def engine(tiny_vision_model: Path) -> TransformersEngine:
    return TransformersEngine(tiny_vision_model)


def test_an_image_answer_equals_transformers_generate_with_the_processor(
    engine: TransformersEngine, tiny_vision_model: Path
) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    image = png("red", size=200, seed=1)
    text, done = answer(engine, prompt(1), [image])
    processor = AutoProcessor.from_pretrained(tiny_vision_model)
    import io

    inputs = processor(
        text=prompt(1),
        images=[Image.open(io.BytesIO(image)).convert("RGB")],
        return_tensors="pt",
        add_special_tokens=False,
    )
    same_as_generate(engine, text, done, inputs)


def same_as_generate(
    engine: TransformersEngine, text: str, done: Finished, inputs: dict[str, Any]
) -> None:
    """The engine's answer (`text`, `done`) is transformers' greedy `generate` on `inputs`,
    the model's processor's, and its prompt holds exactly the processor's ids."""
    assert done.prompt_tokens == inputs["input_ids"].shape[1]  # the processor's ids, exactly
    with torch.inference_mode():
        out = engine.model.generate(
            **inputs,
            max_new_tokens=GREEDY.max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(engine.stop_ids),
            pad_token_id=0,
        )
    new = out[0, inputs["input_ids"].shape[1] :]
    assert text == engine.tokenizer.decode(new, skip_special_tokens=True)
    assert done.completion_tokens == len(new)


def test_the_image_is_read(engine: TransformersEngine) -> None:
    assert engine.vision is not None and engine.vision.tokens_per_image == 64
    _, plain = answer(engine, prompt(0), [])
    red, one = answer(engine, prompt(1), [png("red", size=200, seed=1)])
    # Text + the image's 64 soft tokens + its frame (\n\n, start, end, \n\n) = 68, less one:
    # the frame's first \n\n joins the \n after `user` into one \n\n\n token (as in the
    # processor's ids, which the test above matches exactly).
    assert one.prompt_tokens == plain.prompt_tokens + image_tokens(1, 64) - 1
    _, two = answer(engine, prompt(2), [png("red", seed=1), png("blue", seed=2)])
    assert two.prompt_tokens >= one.prompt_tokens + 64 + 2
    # Different pixels, different first-token distributions (the model looks at them).
    logits = [first_logits(engine, png(colour, size=200, seed=1)) for colour in ("red", "blue")]
    assert not torch.allclose(logits[0], logits[1])
    assert red == answer(engine, prompt(1), [png("red", size=200, seed=1)])[0]  # deterministic


def first_logits(engine: TransformersEngine, image: bytes) -> torch.Tensor:
    from tuneforge.models.vision import expand_images

    assert engine.vision is not None
    ids = engine.tokenizer(
        expand_images(prompt(1), engine.vision.tokens_per_image),
        add_special_tokens=False,
        return_tensors="pt",
    ).input_ids
    with torch.inference_mode():
        return engine.model(input_ids=ids, **engine._image_inputs(ids, [[image]])).logits[0, -1]


def test_a_mismatch_between_markers_and_images_is_refused(engine: TransformersEngine) -> None:
    with pytest.raises(ValueError, match="image tokens"):
        answer(engine, prompt(2), [png("red", seed=1)])


def test_a_text_only_model_refuses_images(tiny_model: Path) -> None:
    text_only = TransformersEngine(tiny_model)
    with pytest.raises(InvalidInput, match="does not take images"):
        answer(text_only, prompt(1), [png("red", seed=1)])
