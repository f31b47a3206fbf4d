"""The transformers engine with images on the tiny Gemma 4: an image prompt in Gemma 4's chat
format takes each image's own number of soft tokens, and our decode loop answers exactly as
transformers' `generate` does with Gemma 4's processor."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.inference.test_vision_engine import answer, same_as_generate
from tests.models.test_gemma4_vision import gemma4_processor, picture
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.models.chat_template import GEMMA_4

pytestmark = pytest.mark.timeout(180)


def prompt(images: int) -> str:
    parts = [{"type": "image"}] * images + [{"type": "text", "text": "Which colour is it?"}]
    return GEMMA_4.render([{"role": "user", "content": parts}], add_generation_prompt=True)


@pytest.fixture(scope="module")
def engine(tiny_gemma4_model: Path) -> TransformersEngine:
    return TransformersEngine(tiny_gemma4_model)


def test_a_gemma_4_image_answer_equals_generate_with_gemma_4s_processor(
    engine: TransformersEngine, tiny_gemma4_model: Path
) -> None:
    from PIL import Image

    assert engine.chat.name == "gemma-4" and engine.vision is not None
    images = [picture(300, 200, "red"), picture(90, 700, "blue")]
    text, done = answer(engine, prompt(2), images)
    inputs = gemma4_processor(tiny_gemma4_model)(
        text=prompt(2),
        images=[Image.open(io.BytesIO(image)).convert("RGB") for image in images],
        return_tensors="pt",
        add_special_tokens=False,
    )
    same_as_generate(engine, text, done, inputs)


def test_each_gemma_4_image_takes_its_own_tokens(engine: TransformersEngine) -> None:
    _, plain = answer(engine, prompt(0), [])
    _, wide = answer(engine, prompt(1), [picture(300, 200)])
    _, tall = answer(engine, prompt(1), [picture(90, 700)])
    # The template writes \n\n<|image|>\n\n; the processor makes the placeholder <|image>, the
    # soft tokens (60 for 300 x 200, 69 for 90 x 700: at most 70) and <image|>. The first \n\n
    # joins the \n after `user` into one \n\n\n token: 60 + 2 + the last \n\n = 63.
    assert wide.prompt_tokens - plain.prompt_tokens == 60 + 3
    assert tall.prompt_tokens - wide.prompt_tokens == 69 - 60
    with pytest.raises(ValueError, match="marks 1 image"):
        answer(engine, prompt(1), [])
