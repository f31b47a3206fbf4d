"""Records with images become the ids Gemma 3's processor makes, with no loss on any image token,
and a cut at max length never falls inside an image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tokenizers import Tokenizer

from tests.images import png
from tuneforge.data.conversation import message
from tuneforge.models.chat_template import render
from tuneforge.models.vision import IMAGE_SOFT_TOKEN, vision_info
from tuneforge.training.components.tokenize import (
    IGNORE_INDEX,
    VISION_UNSUPPORTED,
    ImageDoesNotFit,
    encode_prompt,
    encode_record,
)

QUESTION = "What colour is the square?"


def asked(text: str = QUESTION) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}


@pytest.fixture(scope="module")
def vision(tiny_vision_model: Path) -> tuple[Tokenizer, int, Path]:
    info = vision_info(tiny_vision_model)
    assert info is not None
    tokenizer = Tokenizer.from_file(str(tiny_vision_model / "tokenizer.json"))
    return tokenizer, info, tiny_vision_model


def test_ids_are_the_processors_and_no_image_token_carries_loss(vision) -> None:
    from transformers import AutoProcessor

    tokenizer, per_image, directory = vision
    image = png("red", seed=1)
    messages = [asked(), message("assistant", "red")]
    for assistant_only in (True, False):
        example = encode_record(
            {"messages": messages, "images": [image]}, tokenizer, 4096, assistant_only, per_image
        )
        assert example is not None and example.images == (image,)
        processor = AutoProcessor.from_pretrained(directory)
        with Image.open(io.BytesIO(image)) as picture:
            expected = processor(
                text=render(messages), images=[picture.convert("RGB")], add_special_tokens=False
            )
        assert example.input_ids == expected["input_ids"][0]
        soft = tokenizer.token_to_id(IMAGE_SOFT_TOKEN)
        assert example.input_ids.count(soft) == per_image.tokens_per_image
        start = example.input_ids.index(tokenizer.token_to_id("<start_of_image>"))
        end = example.input_ids.index(tokenizer.token_to_id("<end_of_image>"))
        assert all(label == IGNORE_INDEX for label in example.labels[start : end + 1])
        learned = [label for label in example.labels if label != IGNORE_INDEX]
        if assistant_only:
            assert tokenizer.decode(learned, skip_special_tokens=False) == "red<end_of_turn>"
        else:  # the prompt's text is learned too, never the image
            assert len(learned) > 2 and soft not in learned
    prompt = encode_prompt([asked()], tokenizer, per_image, [image])
    assert example.input_ids[: len(prompt)] == prompt


def test_a_cut_never_falls_inside_an_image(vision) -> None:
    tokenizer, per_image, _ = vision
    first, second = png("red", seed=1), png("blue", seed=2)
    record = {
        "messages": [
            asked(),
            message("assistant", "red"),
            asked("And this one?"),
            message("assistant", "blue"),
        ],
        "images": [first, second],
    }
    whole = encode_record(record, tokenizer, 4096, True, per_image)
    assert whole is not None and whole.images == (first, second)
    starts = [
        i for i, t in enumerate(whole.input_ids) if t == tokenizer.token_to_id("<start_of_image>")
    ]
    # Cut inside the second image: the example is left out, not silently broken.
    with pytest.raises(ImageDoesNotFit, match="cuts through an image"):
        encode_record(record, tokenizer, starts[1] + 5, True, per_image)
    # Cut before the second image: the first exchange trains, the second image goes with its
    # tokens.
    cut = encode_record(record, tokenizer, starts[1], True, per_image)
    assert cut is not None and cut.images == (first,)
    assert tokenizer.token_to_id(IMAGE_SOFT_TOKEN) in cut.input_ids
    assert cut.input_ids == whole.input_ids[: starts[1]]


def test_images_need_a_vision_model_and_must_match_their_parts(vision) -> None:
    tokenizer, per_image, _ = vision
    image = png("green", seed=3)
    messages = [asked(), message("assistant", "green")]
    with pytest.raises(ValueError, match="text-only") as refused:
        encode_record({"messages": messages, "images": [image]}, tokenizer, 512, True, None)
    assert str(refused.value) == VISION_UNSUPPORTED
    with pytest.raises(ValueError, match="text-only"):
        encode_prompt([asked()], tokenizer, None, [image])
    with pytest.raises(ValueError, match="1 image part"):
        encode_record({"messages": messages, "images": []}, tokenizer, 512, True, per_image)
    with pytest.raises(ValueError, match="0 image part"):
        encode_record(
            {"messages": [message("user", "Hi"), message("assistant", "Hi")], "images": [image]},
            tokenizer,
            512,
            True,
            per_image,
        )
    pictured_answer = [
        message("user", "Draw"),
        {"role": "assistant", "content": [{"type": "image"}]},
    ]
    with pytest.raises(ValueError, match="does not write them"):
        encode_record({"messages": pictured_answer, "images": [image]}, tokenizer, 512, True, 64)
