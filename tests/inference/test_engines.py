"""The transformers engine with tiny-random-gemma3: our decode loop answers exactly what
transformers' `generate` does, adapters switch per request over one base, and two streams on
one model interleave without changing either answer."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import render

PROMPT = render([{"role": "user", "content": "Name three colours."}], add_generation_prompt=True)
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=12)


def answer(engine: TransformersEngine, params: GenerationParams, adapter: str | None = None):
    events = list(engine.stream(PROMPT, params, threading.Event(), adapter))
    text = "".join(e.text for e in events if isinstance(e, Delta))
    done = events[-1]
    assert isinstance(done, Finished)
    return text, done


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> TransformersEngine:
    return TransformersEngine(tiny_model)


def reference(model, engine: TransformersEngine, max_new_tokens: int) -> str:
    ids = engine.tokenizer(PROMPT, add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=sorted(engine.stop_ids),
        pad_token_id=0,
    )
    return str(engine.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def test_greedy_answers_equal_transformers_generate(engine: TransformersEngine) -> None:
    text, done = answer(engine, GREEDY)
    assert text == reference(engine.model, engine, 12)
    assert done.reason == "length" and done.completion_tokens == 12 and done.prompt_tokens > 5


def test_sampling_is_reproducible_with_a_seed(engine: TransformersEngine) -> None:
    params = GenerationParams(max_new_tokens=10, seed=3)
    assert answer(engine, params)[0] == answer(engine, params)[0]
    others = {answer(engine, params.model_copy(update={"seed": s}))[0] for s in range(4, 8)}
    assert len(others) > 1


def test_adapters_switch_per_request_over_one_base(tiny_model: Path, tiny_adapter: Path) -> None:
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm

    engine = TransformersEngine(tiny_model)
    base_before = answer(engine, GREEDY)[0]
    bytes_before = engine.memory_bytes
    engine.add_adapter("tuned", tiny_adapter)
    engine.add_adapter("tuned", tiny_adapter)  # once only
    assert engine.memory_bytes > bytes_before
    tuned = answer(engine, GREEDY, "tuned")[0]
    assert tuned != base_before
    assert answer(engine, GREEDY)[0] == base_before  # the bare base, with the adapter loaded
    fresh = PeftModel.from_pretrained(load_causal_lm(tiny_model, torch.float32), tiny_adapter)
    assert tuned == reference(fresh, engine, 12)
    # Two streams on one model take turns token by token; neither answer changes.
    cancelled = threading.Event()
    a = engine.stream(PROMPT, GREEDY, cancelled, None)
    b = engine.stream(PROMPT, GREEDY, cancelled, "tuned")
    texts = {"a": "", "b": ""}
    for x, y in zip(a, b, strict=False):
        texts["a"] += x.text if isinstance(x, Delta) else ""
        texts["b"] += y.text if isinstance(y, Delta) else ""
    texts["a"] += "".join(e.text for e in a if isinstance(e, Delta))
    texts["b"] += "".join(e.text for e in b if isinstance(e, Delta))
    assert texts == {"a": base_before, "b": tuned}
    with pytest.raises(KeyError):
        answer(engine, GREEDY, "unknown")


def test_stop_strings_and_cancel_end_the_answer(engine: TransformersEngine) -> None:
    full = answer(engine, GREEDY)[0]
    cut = full[2:4]
    assert cut.strip(), full
    text, done = answer(engine, GREEDY.model_copy(update={"stop": [cut]}))
    assert text == full[: full.index(cut)] and done.reason == "stop"
    cancelled = threading.Event()
    events = engine.stream(PROMPT, GREEDY, cancelled)
    next(events)
    cancelled.set()
    rest = list(events)
    assert isinstance(rest[-1], Finished) and rest[-1].completion_tokens < 12


def test_a_gemma4_model_answers_its_own_format_and_stops_at_turn_end(models_dir: Path) -> None:
    from tuneforge.models.catalog import catalog
    from tuneforge.models.chat_template import GEMMA_4
    from tuneforge.models.loading import model_dir

    entry = catalog().get("tiny-random-gemma4")
    assert entry is not None
    gemma4 = TransformersEngine(model_dir(entry, models_dir))
    assert gemma4.chat is GEMMA_4
    assert gemma4.stop_ids == {1, 106}  # <eos>, <turn|>
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompt = GEMMA_4.render(messages, add_generation_prompt=True)
    expected = gemma4.tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=False
    )
    events = list(gemma4.stream(prompt, GREEDY, threading.Event()))
    done = events[-1]
    assert isinstance(done, Finished) and done.prompt_tokens == len(expected)
    ids = torch.tensor([expected])
    out = gemma4.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=[1, 106],
        pad_token_id=0,
    )
    text = "".join(e.text for e in events if isinstance(e, Delta))
    assert text == gemma4.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
