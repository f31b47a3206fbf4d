"""Processed dataset records as token ids and loss labels, rendered exactly as inference renders.

A record is rendered with Gemma's chat template (`tuneforge.models.chat_template`) and tokenised
segment by segment, each segment marked as carrying loss or not:

    <bos><start_of_turn>user\\n{system}\\n\\n{user}<end_of_turn>\\n<start_of_turn>model\\n   no loss
    {answer}<end_of_turn>                                                         loss
    \\n<start_of_turn>user\\n{user}<end_of_turn>\\n<start_of_turn>model\\n             no loss
    {answer}<end_of_turn>                                                         loss
    \\n                                                                            no loss

The model learns to end its answer with `<end_of_turn>`, where generation stops. The newline
after it is never generated (the template writes it when a conversation goes on), so it carries
no loss. Every segment boundary falls next to a special token or after a newline, and no Gemma
token joins a newline to anything else, so the segments' ids joined are the ids of the whole
rendered text: training sees the tokens inference sees (the tests check this). The rendered text
holds its own `<bos>`: it is encoded without the tokenizer's added special tokens, and inference
must encode it the same way.

A `text` record (language modelling) is `<bos>{text}<eos>`, with loss on everything after the
`<bos>`: the `<eos>` teaches the model where a document ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from tuneforge.models.chat_template import (
    BOS,
    END_OF_TURN,
    ChatMessage,
    prompt_and_answer,
    render,
)

IGNORE_INDEX = -100
EOS = "<eos>"
VISION_UNSUPPORTED = (
    "This record has an image, and vision training is not supported by this recipe yet: "
    "train on a text-only dataset."
)


@dataclass(frozen=True)
class Example:
    """One tokenised record: `labels[i]` is `input_ids[i]` where the loss applies (the model is
    trained to predict that token from those before it), `IGNORE_INDEX` elsewhere."""

    input_ids: list[int]
    labels: list[int]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(
                f"An example has {len(self.input_ids)} token ids but {len(self.labels)} labels."
            )


def _check_text_only(messages: Sequence[ChatMessage]) -> None:
    for message in messages:
        content = message["content"]
        if not isinstance(content, str) and any(part["type"] == "image" for part in content):
            raise ValueError(VISION_UNSUPPORTED)


def _conversation(record: Mapping[str, Any]) -> list[ChatMessage] | None:
    """The record's messages (a preference record: its prompt and chosen answer), or None for
    a language-modelling record."""
    if "messages" in record:
        messages = list(record["messages"])
    elif "chosen" in record:
        chosen = record["chosen"]
        messages = [*record["prompt"], *([chosen] if isinstance(chosen, Mapping) else chosen)]
    elif "prompt" in record:
        raise ValueError(
            "A prompt-only record has no answer to learn from: supervised fine-tuning needs "
            "conversations, preference pairs or plain text."
        )
    elif "text" in record:
        return None
    else:
        raise ValueError(
            "A record needs `messages`, `prompt` with `chosen`, or `text`; this one has "
            f"{sorted(record)}."
        )
    _check_text_only(messages)
    images = record.get("images")
    if images is not None and len(images) > 0:
        raise ValueError(VISION_UNSUPPORTED)
    return messages


def _conversation_segments(messages: Sequence[ChatMessage]) -> list[tuple[str, bool]]:
    """`(text, carries_loss)` pieces whose texts join into `render(messages)`: each assistant
    answer up to and including its `<end_of_turn>` carries loss, the rest does not."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt, answer = prompt_and_answer(messages[: index + 1])
        if not prompt.startswith(done):
            raise RuntimeError("The chat template does not render conversations prefix by prefix.")
        end = answer.rindex(END_OF_TURN) + len(END_OF_TURN)
        segments += [(prompt[len(done) :], False), (answer[:end], True), (answer[end:], False)]
        done = prompt + answer
    whole = render(messages)
    if not whole.startswith(done):
        raise RuntimeError("The chat template does not render conversations prefix by prefix.")
    segments.append((whole[len(done) :], False))
    return [(text, loss) for text, loss in segments if text]


def encode_record(
    record: Mapping[str, Any], tokenizer: Tokenizer, max_length: int, assistant_only: bool
) -> Example | None:
    """A processed dataset record as an `Example`, cut to its first `max_length` tokens; None
    when no token carrying loss remains. With `assistant_only`, only the assistant answers (and
    their `<end_of_turn>`) carry loss; otherwise every token but the first does. Raises
    ValueError for a record of the wrong shape, with images, or with roles out of order."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 tokens, not {max_length}.")
    messages = _conversation(record)
    if messages is None:
        segments = [(f"{BOS}{record['text']}{EOS}", True)]
    else:
        segments = _conversation_segments(messages)
    encodings = tokenizer.encode_batch_fast(
        [text for text, _ in segments], add_special_tokens=False
    )
    input_ids: list[int] = []
    labels: list[int] = []
    for encoding, (_, loss) in zip(encodings, segments, strict=True):
        ids = encoding.ids
        input_ids += ids
        labels += ids if loss or not assistant_only else [IGNORE_INDEX] * len(ids)
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    labels[0] = IGNORE_INDEX  # nothing predicts the first token
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return Example(input_ids=input_ids, labels=labels)


def encode_prompt(messages: Sequence[ChatMessage], tokenizer: Tokenizer) -> list[int]:
    """The token ids of a prompt (ending with a user turn) followed by `<start_of_turn>model\\n`:
    what the model continues to answer, for sample generations."""
    if messages and messages[-1]["role"] == "assistant":
        raise ValueError("A prompt must end with a user message, not an assistant message.")
    _check_text_only(messages)
    text = render(messages, add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False).ids)
