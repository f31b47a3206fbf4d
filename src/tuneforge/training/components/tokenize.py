"""Processed dataset records as token ids and loss labels, rendered exactly as inference renders.

A record is rendered in the model's chat format (the one its tokenizer speaks:
`tuneforge.models.chat_template.format_of_tokenizer`) and tokenised segment by segment, each
segment marked as carrying loss or not. In Gemma 3's format:

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

Gemma 4's format is the same with `<|turn>`/`<turn|>`, a system turn of its own, and one
difference: inference asks for an answer with `<|turn>model\\n<|channel>thought\\n<channel|>` (the
empty thought channel of thinking turned off), while an answer in the history is written
`<|turn>model\\n{answer}<turn|>`. The final answer is trained after exactly the prompt inference
sends (`ChatFormat.prompt_and_answer`); earlier answers are trained where the history has them.
A record is one sequence: the one inference sees when it writes the final answer.

A record with tool calls (its `tools` column holds their definitions as JSON text) is rendered
with them declared. An answer that calls tools carries loss on its text, its calls and the
response marker after them (the model learns to stop there and wait); a tool's result carries
none, and the answer after it carries loss like any other.

A `text` record (language modelling) is `<bos>{text}<eos>`, with loss on everything after the
`<bos>`: the `<eos>` teaches the model where a document ends.

A record with images (its `images` column holds their bytes, in the order their `{"type":
"image"}` parts appear) trains only a vision model: given the model's tokens per image, each
image the template writes is expanded as the model's processor expands it
(`tuneforge.models.vision.expand_segments`: Gemma 3's fixed frame, or Gemma 4's soft tokens
counted from each image's shape), so the ids equal the processor's. The image's own
tokens never carry loss (not even when the prompts do), and a cut at `max_length` never falls
inside an image: such an example is left out (`ImageDoesNotFit`, counted by the recipe), and
images wholly after the cut are dropped with their tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from tuneforge.bulk import gc_paused
from tuneforge.models.chat_template import (
    BOS,
    GEMMA_3,
    ChatFormat,
    ChatMessage,
    format_of_tokenizer,
)
from tuneforge.models.tokenizer import token_ids
from tuneforge.models.tool_format import ToolDefinition, tools_of
from tuneforge.models.vision import VisionInfo, expand_segments, expand_text

IGNORE_INDEX = -100
EOS = "<eos>"
VISION_UNSUPPORTED = (
    "This record has an image, and the model is text-only: train a vision model (such as "
    "Gemma 3 4B) on it, or train this model on a text-only dataset."
)


class ImageDoesNotFit(ValueError):
    """The cut at `max_length` would fall inside one of the record's images."""


@dataclass(frozen=True, slots=True)
class Example:
    """One tokenised record: `labels[i]` is `input_ids[i]` where the loss applies (the model is
    trained to predict that token from those before it), `IGNORE_INDEX` elsewhere."""

    input_ids: list[int]
    labels: list[int]
    #: The images whose tokens are in `input_ids`, in order (encoded image files).
    images: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(
                f"An example has {len(self.input_ids)} token ids but {len(self.labels)} labels."
            )


def image_count(messages: Sequence[ChatMessage]) -> int:
    """How many image parts the messages hold."""
    return sum(
        part["type"] == "image"
        for message in messages
        if not isinstance(message["content"], str)
        for part in message["content"] or ()
    )


def _check_images(
    messages: Sequence[ChatMessage],
    images: Sequence[bytes],
    vision: VisionInfo | None,
) -> None:
    """Refuse images for a text-only model (`vision` None), images in answers, and
    image parts that do not match the record's images one to one."""
    parts = image_count(messages)
    if not parts and not images:
        return
    if vision is None:
        raise ValueError(VISION_UNSUPPORTED)
    if any(m["role"] == "assistant" for m in messages if image_count([m])):
        raise ValueError("An answer holds an image: Gemma reads images but does not write them.")
    if parts != len(images):
        raise ValueError(
            f"The record's messages have {parts} image part(s) but it carries {len(images)} "
            "image(s): process the dataset again."
        )


def _conversation(
    record: Mapping[str, Any], vision: VisionInfo | None = None
) -> list[ChatMessage] | None:
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
    _check_images(messages, list(record.get("images") or []), vision)
    return messages


def _conversation_segments(
    messages: Sequence[ChatMessage],
    chat: ChatFormat = GEMMA_3,
    tools: Sequence[ToolDefinition] | None = None,
) -> list[tuple[str, bool]]:
    """`(text, carries_loss)` pieces of the conversation in `chat`'s format: each assistant
    answer up to and including the end of its turn carries loss, the rest does not. The final
    answer follows the generation prompt (`chat.prompt_and_answer`), earlier ones the history's
    own `{start_of_turn}model\\n`; for Gemma 3 the texts join into `render(messages)`. An answer
    that calls tools carries loss up to and including the response marker after its calls
    (where generation stops); the tools' results carry none, and the answer after them goes on
    in the same turn."""
    segments: list[tuple[str, bool]] = []
    done = ""
    last = len(messages) - 1
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if index == last:
            prompt, answer = chat.prompt_and_answer(messages, tools=tools)
        else:
            chat.render(messages[: index + 1], tools=tools)  # checks the roles
            prompt = chat.render(messages[:index], tools=tools)
            if messages[index - 1]["role"] != "tool":
                prompt += f"{chat.start_of_turn}model\n"
            answer = chat.render_answer(message["content"], message.get("tool_calls"))
        if not prompt.startswith(done):
            raise RuntimeError("The chat template does not render conversations prefix by prefix.")
        end = len(answer) - 1 if answer.endswith(f"{chat.end_of_turn}\n") else len(answer)
        segments += [(prompt[len(done) :], False), (answer[:end], True), (answer[end:], False)]
        done = prompt + answer
    if messages and messages[-1]["role"] != "assistant":
        whole = chat.render(messages, tools=tools)
        if not whole.startswith(done):
            raise RuntimeError("The chat template does not render conversations prefix by prefix.")
        segments.append((whole[len(done) :], False))
    return [(text, loss) for text, loss in segments if text]


def _segments(
    record: Mapping[str, Any], tokenizer: Tokenizer, vision: VisionInfo | None
) -> tuple[list[tuple[str, bool]], tuple[bytes, ...]]:
    """The record's `(text, carries_loss)` segments in the tokenizer's chat format, images
    expanded, and its images."""
    messages = _conversation(record, vision)
    if messages is None:
        return [(f"{BOS}{record['text']}{EOS}", True)], ()
    tools = tools_of(record.get("tools"))
    segments = _conversation_segments(messages, format_of_tokenizer(tokenizer), tools)
    images = tuple(record.get("images") or ())
    if images:
        assert vision is not None  # `_check_images` refused it otherwise
        texts = expand_segments([text for text, _ in segments], vision, images)
        segments = [(text, loss) for text, (_, loss) in zip(texts, segments, strict=True)]
    return segments, images


def _example(
    segments: Sequence[tuple[Sequence[int], bool]],
    images: tuple[bytes, ...],
    tokenizer: Tokenizer,
    max_length: int,
    assistant_only: bool,
    vision: VisionInfo | None,
) -> Example | None:
    """The example of a record's encoded `(ids, carries_loss)` segments (see `encode_record`)."""
    input_ids: list[int] = []
    labels: list[int] = []
    for ids, loss in segments:
        input_ids += ids
        labels += ids if loss or not assistant_only else [IGNORE_INDEX] * len(ids)
    if images:
        assert vision is not None
        images = _cut_images(tokenizer, input_ids, labels, images, max_length, vision)
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    labels[0] = IGNORE_INDEX  # nothing predicts the first token
    if labels.count(IGNORE_INDEX) == len(labels):
        return None
    return Example(input_ids=input_ids, labels=labels, images=images)


def _check_max_length(max_length: int) -> None:
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 tokens, not {max_length}.")


def encode_record(
    record: Mapping[str, Any],
    tokenizer: Tokenizer,
    max_length: int,
    assistant_only: bool,
    vision: VisionInfo | None = None,
) -> Example | None:
    """A processed dataset record as an `Example`, cut to its first `max_length` tokens; None
    when no token carrying loss remains. With `assistant_only`, only the assistant answers (and
    their `<end_of_turn>`) carry loss; otherwise every token but the first does (image tokens
    never do). `vision`: the model's image numbers (None: a text-only model). Raises
    ValueError for a record of the wrong shape, with images a text-only model cannot read, or
    with roles out of order; `ImageDoesNotFit` when the cut would fall inside an image."""
    _check_max_length(max_length)
    segments, images = _segments(record, tokenizer, vision)
    encodings = tokenizer.encode_batch_fast(
        [text for text, _ in segments], add_special_tokens=False
    )
    encoded = [(e.ids, loss) for e, (_, loss) in zip(encodings, segments, strict=True)]
    return _example(encoded, images, tokenizer, max_length, assistant_only, vision)


@gc_paused()
def encode_records(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Tokenizer,
    max_length: int,
    assistant_only: bool,
    vision: VisionInfo | None = None,
) -> list[Example | ValueError | None]:
    """Each record as `encode_record` encodes it, or the ValueError it raises (`ImageDoesNotFit`
    included), in order. Records without images or tools are encoded together, their texts'
    ids from remembered words (`token_ids`): many short records take a fraction of the time
    one tokenizer call each takes; the others go through `encode_record`."""
    _check_max_length(max_length)
    results: list[Example | ValueError | None] = []
    plain: dict[int, list[tuple[str, bool]]] = {}
    for index, record in enumerate(records):
        try:
            if record.get("images") or record.get("tools"):
                results.append(encode_record(record, tokenizer, max_length, assistant_only, vision))
            else:
                plain[index] = _segments(record, tokenizer, vision)[0]
                results.append(None)  # encoded below, with the other plain records
        except ValueError as exc:
            results.append(exc)
    texts = [text for segments in plain.values() for text, _ in segments]
    ids = iter(token_ids(texts, tokenizer))
    for index, segments in plain.items():
        encoded = [(next(ids), loss) for _, loss in segments]
        results[index] = _example(encoded, (), tokenizer, max_length, assistant_only, vision)
    return results


def _cut_images(
    tokenizer: Tokenizer,
    input_ids: list[int],
    labels: list[int],
    images: tuple[bytes, ...],
    max_length: int,
    info: VisionInfo,
) -> tuple[bytes, ...]:
    """Take the loss off every image's tokens (in place), and keep the images whose tokens end
    before `max_length`; raise `ImageDoesNotFit` when the cut falls inside one."""
    start, soft, end = (tokenizer.token_to_id(token) for token in (info.boi, info.soft, info.eoi))
    if soft is None or start is None or end is None:
        raise ValueError(f"The model's tokenizer has no {info.soft}: it is not a vision model's.")
    spans: list[tuple[int, int]] = []
    opened: int | None = None
    for index, token in enumerate(input_ids):
        if token == start:
            opened = index
        elif token == end and opened is not None:
            spans.append((opened, index))
            opened = None
    if len(spans) != len(images):
        raise ValueError(f"{len(images)} image(s) but {len(spans)} encoded in the text.")
    for first, last in spans:
        labels[first : last + 1] = [IGNORE_INDEX] * (last + 1 - first)
    for first, last in spans:
        if first < max_length <= last:
            raise ImageDoesNotFit(
                f"max_length {max_length} cuts through an image (its tokens are {first} to {last})."
            )
    return tuple(image for image, (_, last) in zip(images, spans, strict=True) if last < max_length)


def encode_prompt(
    messages: Sequence[ChatMessage],
    tokenizer: Tokenizer,
    vision: VisionInfo | None = None,
    images: Sequence[bytes] = (),
    tools: Sequence[ToolDefinition] | None = None,
) -> list[int]:
    """The token ids of a prompt (ending with a user turn) followed by the generation prompt of
    the tokenizer's chat format (`<start_of_turn>model\\n`; Gemma 4:
    `<|turn>model\\n<|channel>thought\\n<channel|>`): what the model continues to answer, for
    sample generations; `tools`: the tools it may call. Its images (`images`, one per
    image part) are expanded into `vision` tokens each, for a vision model."""
    if messages and messages[-1]["role"] == "assistant":
        raise ValueError("A prompt must end with a user message, not an assistant message.")
    _check_images(messages, images, vision)
    chat = format_of_tokenizer(tokenizer)
    text = chat.render(messages, tools=tools, add_generation_prompt=True)
    if images:
        assert vision is not None
        text = expand_text(text, vision, images)
    return list(tokenizer.encode(text, add_special_tokens=False).ids)
