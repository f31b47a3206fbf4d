"""Evaluation during training: loss, perplexity and token accuracy on the test split, and sample
answers generated greedily for a few prompts.

A vision model's run evaluates and answers with images: its batches get their image inputs from
`ImageInputs`, and its sample prompts are test rows with their images, each answer carrying the
images' thumbnails (`images`: small JPEG `data:` URLs) for the run page to show."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Tokenizer
from torch import nn

from tuneforge.data.conversation import message, text_of
from tuneforge.models.tool_format import tools_of
from tuneforge.training.components.generation import (
    Sampling,
    complete,
    dense_head_input,
    stop_ids,
)
from tuneforge.training.components.loss import causal_lm_loss
from tuneforge.training.components.tokenize import Example, encode_prompt
from tuneforge.training.runtime import Runtime, evaluating
from tuneforge.training.spec import SAMPLES_FROM_TEST

if TYPE_CHECKING:
    from tuneforge.training.components.vision import ImageInputs


@dataclass(frozen=True)
class SamplePrompt:
    prompt: str  # what the user sees
    messages: list[dict[str, Any]]
    reference: str | None
    images: tuple[bytes, ...] = ()  # one per image part of `messages`, in order
    thumbnails: tuple[str, ...] = ()  # the images as small JPEG `data:` URLs
    tools: Sequence[Mapping[str, Any]] | None = None  # the tools the model may call


def evaluate(
    model: nn.Module,
    examples: Sequence[Example],
    batch_size: int,
    packing: bool,
    runtime: Runtime,
    images: ImageInputs | None = None,
) -> dict[str, float]:
    """Mean token loss, its exponential (perplexity) and the share of next tokens predicted
    (`images` gives a vision model's batches their image inputs)."""
    loss, tokens, correct = 0.0, 0, 0
    with evaluating(model), runtime.autocast():
        if images is not None:
            images.warm([i for example in examples for i in example.images], runtime.device)
        for start in range(0, len(examples), batch_size):
            for batch in runtime.forwards(examples[start : start + batch_size], packing):
                if images is not None:
                    batch = images.attach(batch)
                out = causal_lm_loss(model, batch)
                loss += float(out.loss_sum)
                tokens += out.tokens
                correct += out.correct
    mean = loss / max(tokens, 1)
    return {
        "eval_loss": mean,
        "perplexity": math.exp(min(mean, 50.0)),
        "token_accuracy": correct / max(tokens, 1),
    }


def sample_prompts(
    prompts: Sequence[str], test_records: Sequence[Mapping[str, Any]], vision: bool = False
) -> list[SamplePrompt]:
    """The spec's prompts, or the first prompts of the test split with their reference answer
    (a conversation's last answer, a preference pair's chosen one, a desirable completion).
    For a `vision` model, test rows with images come first (their images with them); other
    models skip them."""
    if prompts:
        return [SamplePrompt(p, [dict(message("user", p))], None) for p in prompts]
    rows = list(test_records)
    if vision:  # a held-out image, where the test split has one
        rows.sort(key=lambda record: not record.get("images"))
    chosen: list[SamplePrompt] = []
    for record in rows:
        found = _prompt_and_reference(record)
        if found is None:
            continue
        messages, reference = found
        pictured = any(part["type"] != "text" for m in messages for part in m["content"] or ())
        if pictured and not vision:
            continue
        user = next(m for m in reversed(messages) if m["role"] == "user")
        images = tuple(record.get("images") or ()) if pictured else ()
        chosen.append(
            SamplePrompt(
                text_of(user),
                messages,
                reference,
                images,
                _thumbnails(images),
                tools_of(record.get("tools")),
            )
        )
        if len(chosen) == SAMPLES_FROM_TEST:
            break
    return chosen


def _thumbnails(images: Sequence[bytes]) -> tuple[str, ...]:
    from tuneforge.data.images import thumbnail

    return tuple(thumbnail(image) for image in images)


def _prompt_and_reference(
    record: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], str | None] | None:
    """A record's prompt (ending with a user turn) and its reference answer, if it has one."""
    if "messages" in record:
        messages = list(record.get("messages") or [])
        if not messages or messages[-1]["role"] != "assistant":
            return None
        return messages[:-1], text_of(messages[-1])
    prompt = list(record.get("prompt") or [])
    if not prompt or prompt[-1]["role"] != "user":
        return None
    answer = record.get("chosen")
    if answer is None and record.get("label") is True:
        answer = record.get("completion")
    if isinstance(answer, list):
        answer = answer[0] if len(answer) == 1 else None
    return prompt, (text_of(answer) if answer else None)


def generate(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[SamplePrompt],
    max_new_tokens: int,
    runtime: Runtime,
    images: ImageInputs | None = None,
) -> list[dict[str, Any]]:
    """Greedy answers to `prompts`, stopping at the end of a turn (`<end_of_turn>`, Gemma 4's
    `<turn|>`) or `<eos>`; each says whether it `ended` there (False: it ran out of tokens
    first). The prompts without images are answered together, in one left-padded batch
    (`complete`): each new token reads the model's weights, its 262,144-word output head above
    all, once for all of them. A prompt with images needs `images` (a vision model's inputs)
    and is answered alone; its answer carries their thumbnails (`images`)."""
    per_image = images.info if images is not None else None
    encoded = [
        encode_prompt(sample.messages, tokenizer, per_image, sample.images, sample.tools)
        for sample in prompts
    ]
    alone = [images is not None and bool(sample.images) for sample in prompts]
    together = [ids for ids, single in zip(encoded, alone, strict=True) if not single]
    answered: Iterator[tuple[str, bool]] = iter(())
    if together:
        greedy = Sampling(max_new_tokens, greedy=True)
        done = complete(model, tokenizer, together, 1, greedy, runtime)
        answered = zip(done.texts, done.ended, strict=True)
    answers = []
    for sample, ids, single in zip(prompts, encoded, alone, strict=True):
        if single and images is not None:
            answer, ended = _answer_with_images(
                model, tokenizer, ids, sample.images, images, max_new_tokens, runtime
            )
        else:
            answer, ended = next(answered)
        item: dict[str, Any] = {"prompt": sample.prompt, "answer": answer, "ended": ended}
        if sample.reference is not None:
            item["reference"] = sample.reference
        if sample.thumbnails:
            item["images"] = list(sample.thumbnails)
        answers.append(item)
    return answers


def _answer_with_images(
    model: nn.Module,
    tokenizer: Tokenizer,
    ids: list[int],
    pictures: Sequence[bytes],
    images: ImageInputs,
    max_new_tokens: int,
    runtime: Runtime,
) -> tuple[str, bool]:
    """The greedy answer to the prompt `ids` with its `pictures`, and whether it ended before
    the token limit."""
    stop = stop_ids(tokenizer)
    prompt = torch.tensor([ids], device=runtime.device)
    with evaluating(model), runtime.autocast(), dense_head_input(model):
        output = model.generate(  # type: ignore[operator]
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=0,
            use_cache=True,
            **images.generation_inputs(prompt, pictures),
        )
    new = output[0, prompt.shape[1] :].tolist()
    ended = len(new) < max_new_tokens or (bool(new) and new[-1] in stop)
    return tokenizer.decode(new, skip_special_tokens=True).strip(), ended
