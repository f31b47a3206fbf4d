"""Preference and feedback records as token ids: a prompt and the answers it is compared with.

A prompt renders in the model's chat format (the one its tokenizer speaks:
`chat_template.format_of_tokenizer`) up to and including the generation prompt
(`<start_of_turn>model\\n`; Gemma 4: `<|turn>model\\n<|channel>thought\\n<channel|>`), exactly as
SFT and inference render it; an answer is its text and the end of its turn (`<end_of_turn>`,
`<turn|>`; the newline the template writes after it is never generated, so it is not scored).
The two are tokenised on their own: the boundary follows a newline or a control token, which no
Gemma token joins to anything, so the ids joined are those of the prompt and answer rendered
whole.

A pair's two answers share one prompt; when prompt and the longer answer exceed `max_length`,
the prompt loses its beginning (its `<bos>` stays: the question being answered is at its end),
down to half of `max_length` at most, and the answers are then cut at their end to fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from tuneforge.models.chat_template import ChatMessage, format_of_tokenizer


@dataclass(frozen=True)
class Completion:
    """A prompt's token ids and an answer's: the answer's tokens are the ones scored."""

    prompt_ids: list[int]
    answer_ids: list[int]

    def __post_init__(self) -> None:
        if not self.prompt_ids or not self.answer_ids:
            raise ValueError("A completion needs at least one prompt and one answer token.")

    @property
    def tokens(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


@dataclass(frozen=True)
class Pair:
    """A preference pair: the same prompt answered two ways."""

    chosen: Completion
    rejected: Completion
    cut: bool  # max_length cut the prompt or an answer

    @property
    def tokens(self) -> int:
        return self.chosen.tokens + self.rejected.tokens


@dataclass(frozen=True)
class Feedback:
    """One answer to a prompt, desirable or not."""

    completion: Completion
    desirable: bool
    cut: bool


def _answer(message: ChatMessage | Sequence[ChatMessage]) -> ChatMessage:
    """A record's answer: one assistant message (a list of one is accepted)."""
    if isinstance(message, Mapping):
        return message
    messages = list(message)
    if len(messages) != 1:
        raise ValueError(f"An answer must be one assistant message, not {len(messages)}.")
    return messages[0]


def _ids(text: str, tokenizer: Tokenizer) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def encode_answers(
    prompt: Sequence[ChatMessage],
    answers: Sequence[ChatMessage],
    tokenizer: Tokenizer,
    max_length: int,
) -> tuple[list[Completion], bool]:
    """The completions of `prompt` by each of `answers` (assistant messages), cut to fit
    `max_length` tokens each (see the module docstring), and whether anything was cut."""
    if max_length < 4:
        raise ValueError(f"max_length must be at least 4 tokens, not {max_length}.")
    chat = format_of_tokenizer(tokenizer)
    prompt_ids = _ids(chat.render(prompt, add_generation_prompt=True), tokenizer)
    answer_ids = []
    for answer in answers:
        if answer["role"] != "assistant":
            raise ValueError(f"An answer must be an assistant message, not {answer['role']!r}.")
        _, text = chat.prompt_and_answer([*prompt, answer])
        end = text.rindex(chat.end_of_turn) + len(chat.end_of_turn)
        answer_ids.append(_ids(text[:end], tokenizer))
    longest = max(len(ids) for ids in answer_ids)
    cut = len(prompt_ids) + longest > max_length
    if cut:
        keep = min(len(prompt_ids), max(max_length - longest, max_length // 2))
        prompt_ids = prompt_ids[:1] + prompt_ids[len(prompt_ids) - keep + 1 :]
        answer_ids = [ids[: max_length - len(prompt_ids)] for ids in answer_ids]
    return [Completion(prompt_ids, ids) for ids in answer_ids], cut


def encode_pair(record: Mapping[str, Any], tokenizer: Tokenizer, max_length: int) -> Pair:
    """A preference record (`prompt`, `chosen`, `rejected`) as a `Pair`."""
    answers = [_answer(record["chosen"]), _answer(record["rejected"])]
    (chosen, rejected), cut = encode_answers(record["prompt"], answers, tokenizer, max_length)
    return Pair(chosen, rejected, cut)


def encode_feedback(
    record: Mapping[str, Any], tokenizer: Tokenizer, max_length: int
) -> list[Feedback]:
    """A feedback record (`prompt`, `completion`, `label`) as one `Feedback`; a preference
    record as two: its chosen answer desirable, its rejected one not."""
    if "completion" in record:
        (completion,), cut = encode_answers(
            record["prompt"], [_answer(record["completion"])], tokenizer, max_length
        )
        return [Feedback(completion, bool(record["label"]), cut)]
    pair = encode_pair(record, tokenizer, max_length)
    return [Feedback(pair.chosen, True, pair.cut), Feedback(pair.rejected, False, pair.cut)]
