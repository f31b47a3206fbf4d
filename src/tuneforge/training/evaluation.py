"""Evaluation during training: loss, perplexity and token accuracy on the test split, and sample
answers generated greedily for a few prompts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from tuneforge.data.conversation import message, text_of
from tuneforge.models.chat_template import END_OF_TURN
from tuneforge.training.components.generation import dense_head_input
from tuneforge.training.components.loss import causal_lm_loss
from tuneforge.training.components.tokenize import Example, encode_prompt
from tuneforge.training.runtime import Runtime, evaluating

SAMPLES_FROM_TEST = 3  # sample prompts taken from the test split when the spec names none


@dataclass(frozen=True)
class SamplePrompt:
    prompt: str  # what the user sees
    messages: list[dict[str, Any]]
    reference: str | None


def evaluate(
    model: nn.Module, examples: Sequence[Example], batch_size: int, packing: bool, runtime: Runtime
) -> dict[str, float]:
    """Mean token loss, its exponential (perplexity) and the share of next tokens predicted."""
    loss, tokens, correct = 0.0, 0, 0
    with evaluating(model), runtime.autocast():
        for start in range(0, len(examples), batch_size):
            for batch in runtime.forwards(examples[start : start + batch_size], packing):
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
    prompts: Sequence[str], test_records: Sequence[Mapping[str, Any]]
) -> list[SamplePrompt]:
    """The spec's prompts, or the first prompts of the test split with their reference answer
    (a conversation's last answer, a preference pair's chosen one, a desirable completion)."""
    if prompts:
        return [SamplePrompt(p, [dict(message("user", p))], None) for p in prompts]
    chosen: list[SamplePrompt] = []
    for record in test_records:
        found = _prompt_and_reference(record)
        if found is None:
            continue
        messages, reference = found
        if any(part["type"] != "text" for m in messages for part in m["content"]):
            continue
        user = next(m for m in reversed(messages) if m["role"] == "user")
        chosen.append(SamplePrompt(text_of(user), messages, reference))
        if len(chosen) == SAMPLES_FROM_TEST:
            break
    return chosen


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
) -> list[dict[str, Any]]:
    """Greedy answers to `prompts`, stopping at `<end_of_turn>`; each says whether it `ended`
    there (False: it ran out of tokens first)."""
    stop = [tokenizer.token_to_id(END_OF_TURN), tokenizer.token_to_id("<eos>")]
    answers = []
    with evaluating(model), runtime.autocast(), dense_head_input(model):
        for sample in prompts:
            ids = torch.tensor([encode_prompt(sample.messages, tokenizer)], device=runtime.device)
            output = model.generate(  # type: ignore[operator]
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=[t for t in stop if t is not None],
                pad_token_id=0,
                use_cache=True,
            )
            new = output[0, ids.shape[1] :].tolist()
            answer = tokenizer.decode(new, skip_special_tokens=True)
            # Ended: it stopped at an end of turn rather than at the token limit.
            ended = len(new) < max_new_tokens or (bool(new) and new[-1] in stop)
            item: dict[str, Any] = {
                "prompt": sample.prompt,
                "answer": answer.strip(),
                "ended": ended,
            }
            if sample.reference is not None:
                item["reference"] = sample.reference
            answers.append(item)
    return answers
