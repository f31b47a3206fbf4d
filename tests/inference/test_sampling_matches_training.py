"""The transformers engine samples exactly as GRPO's trainer samples its completions, and as
transformers' `generate` samples: with the same model, prompt, settings and seed, the same
tokens (tiny-random-gemma3, fp32). Sampled answers that score differently in an evaluation and
in a GRPO run therefore come from different settings (temperature, top-p, top-k, length,
precision), not from a different sampler."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from tuneforge.data.conversation import message
from tuneforge.inference.engine import Delta
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import render
from tuneforge.training.components.generation import Sampling, complete
from tuneforge.training.components.tokenize import encode_prompt
from tuneforge.training.runtime import Runtime

QUESTION = "What is 7 plus 5? Reply as <answer>N</answer>."
TOKENS = 6


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> TransformersEngine:
    return TransformersEngine(tiny_model)


def engine_answer(engine: TransformersEngine, params: GenerationParams) -> str:
    text = render([{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    events = engine.stream(text, params, threading.Event())
    return "".join(e.text for e in events if isinstance(e, Delta)).strip()


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_the_engine_samples_what_grpo_samples(
    engine: TransformersEngine, tiny_model: Path, temperature: float, top_p: float
) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    ids = encode_prompt([message("user", QUESTION)], tokenizer)
    runtime = Runtime(device="cpu", precision="fp32", unsloth=False)
    answers = set()
    for seed in range(2):
        trained = complete(
            engine.model, tokenizer, [ids], 1, Sampling(TOKENS, temperature, top_p), runtime, seed
        ).texts[0]
        # GRPO draws from the whole nucleus: no top-k cut.
        params = GenerationParams(
            temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=TOKENS, seed=seed
        )
        assert engine_answer(engine, params) == trained
        answers.add(trained)
    assert len(answers) > 1  # the seeds draw differently: the comparison can fail


def test_the_engine_samples_what_generate_samples(engine: TransformersEngine) -> None:
    """Gemma's recommended sampling (the engine's defaults): top-k 64, top-p 0.95."""
    text = render([{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    ids = engine.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    for seed in range(2):
        torch.manual_seed(seed)
        out = engine.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=TOKENS,
            do_sample=True,
            temperature=1.0,
            top_k=64,
            top_p=0.95,
            eos_token_id=sorted(engine.stop_ids),
            pad_token_id=0,
        )
        expected = engine.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        params = GenerationParams(max_new_tokens=TOKENS, seed=seed)
        assert engine_answer(engine, params) == expected.strip()
