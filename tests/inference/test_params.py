"""A generation request renders its conversation in the model's chat format."""

from __future__ import annotations

import pytest

from tuneforge.inference.params import Generate, ModelRef
from tuneforge.models.chat_template import GEMMA_3, GEMMA_4, ChatFormat


def request(content: object, images: int = 0) -> Generate:
    return Generate(
        model=ModelRef(base="tiny-random-gemma4"),
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}],
        images=Generate.encode([b"png"] * images),
    )


def test_the_conversation_renders_in_the_given_format() -> None:
    plain = request("Hi")
    assert plain.text() == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert plain.text(GEMMA_4) == (
        "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n"
        "<|turn>model\n<|channel>thought\n<channel|>"
    )
    with_image = request([{"type": "image"}, {"type": "text", "text": "What?"}], images=1)
    assert with_image.text(GEMMA_4).count("\n\n<|image|>\n\n") == 1
    assert with_image.text(GEMMA_3).count("<start_of_image>") == 1


@pytest.mark.parametrize(
    ("chat", "token"), [(GEMMA_3, "<start_of_image>"), (GEMMA_4, "<|image|>")], ids=["3", "4"]
)
def test_the_formats_image_token_written_as_text_is_refused(chat: ChatFormat, token: str) -> None:
    with pytest.raises(ValueError, match=f"may not contain {token}"):
        request(f"look {token}").text(chat)
    with pytest.raises(ValueError, match=f"may not contain {token}"):
        request([{"type": "image"}, {"type": "text", "text": token}], images=1).text(chat)
    # the other format's token is ordinary text there
    other = "<|image|>" if chat is GEMMA_3 else "<start_of_image>"
    assert other in request(f"look {other}").text(chat)
