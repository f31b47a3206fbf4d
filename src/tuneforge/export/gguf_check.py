"""Does a GGUF export answer like the model it came from? Greedy tokens, side by side.

Both engines get the same token ids (llama.cpp never tokenizes), decode greedily and always
produce exactly `n` new tokens (an end-of-text or end-of-turn token does not stop them), and
`agreement` counts how many leading tokens are equal. An `f16` export of a model should agree
on every token; quantized files drift later or sooner. torch, transformers and llama.cpp are
imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.hardware import usable_cores
from tuneforge.models.chat_template import BOS, format_of_tokenizer, render
from tuneforge.models.llamacpp import open_gguf

#: Questions whose first 16 greedy tokens on Gemma 3 270M have no near-tie: the top two logits
#: differ by at least 0.4 at every step. Prompts with a near-tie measure tie-breaking, not the
#: export: "Write a haiku about the sea." (top two 0.01 apart at the 11th token) and "List three
#: prime numbers." (0.00 at the 10th) part ways there under any 8-bit or 4-bit quantization,
#: llama.cpp's own included, while an f16 export still agrees on all 16 tokens.
QUESTIONS = (
    "What is the capital of France?",
    "Describe a cat in one sentence.",
    "Give me a recipe for pancakes.",
)
#: The three prompts, in Gemma 3's chat format with the generation prompt (and `<bos>`).
PROMPTS = tuple(
    render([{"role": "user", "content": q}], add_generation_prompt=True) for q in QUESTIONS
)
#: Room for the prompts and the answers in llama.cpp's context.
CONTEXT = 512
#: Two logits closer than this are a near tie: rounding the weights (any quantisation) may
#: swap them, and that says nothing about the conversion.
NEAR_TIE = 0.5


def prompt_ids(model_dir: Path, prompts: Sequence[str] | None = None) -> list[list[int]]:
    """`prompts` tokenized by `model_dir`'s tokenizer; each starts with `<bos>` (in the text).
    By default the `QUESTIONS`, in the chat format the tokenizer speaks (Gemma 3's: `PROMPTS`)."""
    from tuneforge.models.tokenizer import model_tokenizer

    tokenizer = model_tokenizer(model_dir)
    if prompts is None:
        chat = format_of_tokenizer(tokenizer)
        prompts = [
            chat.render([{"role": "user", "content": q}], add_generation_prompt=True)
            for q in QUESTIONS
        ]
    encoded = [list(tokenizer.encode(p, add_special_tokens=False).ids) for p in prompts]
    for ids in encoded:
        if not ids or ids[0] != tokenizer.token_to_id(BOS):
            raise ValueError(f"The tokenizer in {model_dir} did not encode <bos> as its bos token.")
    return encoded


def greedy_reference(
    model_dir: Path, prompt_ids: list[list[int]], n: int, adapter: Path | None = None
) -> tuple[list[list[int]], list[list[float]]]:
    """The first `n` greedy tokens after each prompt, from transformers in float32 (with the
    PEFT `adapter` directory attached, if given), and at each step the gap between the best and
    the second-best logit (small: a near tie)."""
    import torch

    from tuneforge.models.loading import load_causal_lm, loading_lock

    model: Any = load_causal_lm(model_dir, torch.float32)
    if adapter is not None:
        from peft import PeftModel

        with loading_lock:
            model = PeftModel.from_pretrained(model, adapter).eval()
    answers, gaps = [], []
    with torch.inference_mode():
        for ids in prompt_ids:
            # Argmax step by step rather than `generate`, which would stop at (or, with
            # min_new_tokens, forbid) an end-of-turn token: this keeps exactly what llama.cpp
            # picks at every step.
            output = model(input_ids=torch.tensor([ids]), use_cache=True)
            new: list[int] = []
            gap: list[float] = []
            for step in range(n):
                top = output.logits[0, -1].float().topk(2)
                new.append(int(top.indices[0]))
                gap.append(float(top.values[0] - top.values[1]))
                if step + 1 < n:
                    output = model(
                        input_ids=torch.tensor([new[-1:]]), cache=output.cache, use_cache=True
                    )
            answers.append(new)
            gaps.append(gap)
    return answers, gaps


def greedy_tokens_hf(model_dir: Path, prompt_ids: list[list[int]], n: int) -> list[list[int]]:
    """The first `n` greedy tokens after each prompt, from transformers in float32."""
    return greedy_reference(model_dir, prompt_ids, n)[0]


def greedy_tokens_llamacpp(
    gguf: Path,
    prompt_ids: list[list[int]],
    n: int,
    threads: int | None = None,
    adapter: Path | None = None,
) -> list[list[int]]:
    """The first `n` greedy tokens after each prompt, from llama.cpp (fresh context each), with
    the GGUF LoRA `adapter` file on `gguf`, if given."""
    llm = open_gguf(
        gguf,
        n_ctx=max(CONTEXT, max(len(ids) for ids in prompt_ids) + n),
        n_threads=threads or usable_cores(),
        **_lora(adapter),
    )
    answers = []
    try:
        for ids in prompt_ids:
            llm.reset()
            new: list[int] = []
            generator = llm.generate(
                ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True
            )
            for token in generator:
                new.append(int(token))
                if len(new) == n:
                    break
            answers.append(new)
    finally:
        llm.close()
    return answers


def _lora(adapter: Path | None) -> dict[str, Any]:
    """`Llama`'s options that load the GGUF LoRA `adapter` at its own scale (none: none)."""
    return {} if adapter is None else {"lora_path": str(adapter), "lora_scale": 1.0}


def agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def compare(gguf: Path, model_dir: Path, n: int = 16, threads: int | None = None) -> list[int]:
    """Per prompt of `PROMPTS`, how many of the first `n` greedy tokens of the GGUF file agree
    with those of the transformers model in `model_dir`."""
    ids = prompt_ids(model_dir)
    expected = greedy_tokens_hf(model_dir, ids, n)
    found = greedy_tokens_llamacpp(gguf, ids, n, threads)
    return [agreement(a, b) for a, b in zip(expected, found, strict=True)]


def forced_choices_llamacpp(
    gguf: Path,
    prompt_ids: list[list[int]],
    answers: list[list[int]],
    threads: int | None = None,
    adapter: Path | None = None,
) -> list[list[int]]:
    """llama.cpp's best next token at every step of `answers` (transformers' own greedy
    answers), each step seeing transformers' tokens before it: one early difference does not
    change the steps after it. `adapter`: a GGUF LoRA adapter file on `gguf`."""
    import numpy as np

    longest = max(len(p) + len(a) for p, a in zip(prompt_ids, answers, strict=True))
    llm = open_gguf(
        gguf,
        n_ctx=max(CONTEXT, longest),
        n_threads=threads or usable_cores(),
        logits_all=True,
        **_lora(adapter),
    )
    choices = []
    try:
        for ids, answer in zip(prompt_ids, answers, strict=True):
            llm.reset()
            llm.eval(ids + answer[:-1])
            scores = np.asarray(llm.scores[len(ids) - 1 : len(ids) - 1 + len(answer)])
            choices.append([int(i) for i in scores.argmax(axis=1)])
    finally:
        llm.close()
    return choices


@dataclass(frozen=True)
class Check:
    """How a GGUF file answers the fixed prompts next to transformers (`n` tokens each).

    `greedy`: per prompt, the leading greedy tokens both engines generate alike (one near tie
    resolved differently ends the run). `forced`: per prompt, the steps at which llama.cpp's
    best token, given transformers' answer so far, is transformers' token, or differs at a near
    tie (transformers' two best logits less than `NEAR_TIE` apart); `near_ties` counts the
    steps excused so.
    """

    greedy: list[int]
    forced: list[int]
    near_ties: int
    n: int


def check(gguf: Path, model_dir: Path, n: int = 16, threads: int | None = None) -> Check:
    """The GGUF export `gguf` of the transformers model in `model_dir`, on the fixed prompts."""
    return _check(gguf, model_dir, n, threads)


def check_adapter(
    base_gguf: Path,
    adapter_gguf: Path,
    base_dir: Path,
    adapter_dir: Path,
    n: int = 16,
    threads: int | None = None,
) -> Check:
    """Greedy tokens of llama.cpp (base_gguf + adapter_gguf) against transformers fp32 with the
    PEFT adapter attached (base_dir + adapter_dir), near ties excused, as `check` does for
    exports."""
    return _check(base_gguf, base_dir, n, threads, (adapter_gguf, adapter_dir))


def _check(
    gguf: Path,
    model_dir: Path,
    n: int,
    threads: int | None,
    adapters: tuple[Path, Path] | None = None,
) -> Check:
    """`check`, with `adapters` (the GGUF LoRA file, the PEFT directory) on both sides."""
    gguf_adapter, peft_adapter = adapters or (None, None)
    ids = prompt_ids(model_dir)
    expected, gaps = greedy_reference(model_dir, ids, n, peft_adapter)
    found = greedy_tokens_llamacpp(gguf, ids, n, threads, gguf_adapter)
    forced = forced_choices_llamacpp(gguf, ids, expected, threads, gguf_adapter)
    agreed, ties = [], 0
    for want, got, gap in zip(expected, forced, gaps, strict=True):
        same = [a == b for a, b in zip(want, got, strict=True)]
        tied = [not s and g < NEAR_TIE for s, g in zip(same, gap, strict=True)]
        ties += sum(tied)
        agreed.append(sum(s or t for s, t in zip(same, tied, strict=True)))
    greedy = [agreement(a, b) for a, b in zip(expected, found, strict=True)]
    return Check(greedy=greedy, forced=agreed, near_ties=ties, n=n)
