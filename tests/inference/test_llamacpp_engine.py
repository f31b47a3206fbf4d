"""The llama.cpp engine on the bundled Gemma 3 270M GGUF (the `gguf` extra, which CI installs),
and which engine `auto` picks for which model."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tuneforge.errors import EngineUnavailable
from tuneforge.inference import loaders
from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.fast_path import Verdict
from tuneforge.inference.params import GenerationParams, ModelRef
from tuneforge.models.catalog import catalog
from tuneforge.models.chat_template import render

PROMPT = render([{"role": "user", "content": "Name three colours."}], add_generation_prompt=True)


def entry(model_id: str):  # type: ignore[no-untyped-def]
    found = catalog().get(model_id)
    assert found is not None
    return found


def test_auto_picks_llama_cpp_for_the_bundled_gguf_and_for_checked_fine_tunes() -> None:
    gguf = entry("gemma-3-270m")
    installed = loaders.installed("llama_cpp")
    fast = "llama.cpp" if installed else "transformers"
    assert loaders.choose(ModelRef(base="gemma-3-270m"), gguf) == fast
    tuned = ModelRef(base="gemma-3-270m", artifact_key="k", kind="adapter")
    # A LoRA fine-tune: transformers until its fast path is checked, then llama.cpp if it passed.
    assert loaders.choose(tuned, gguf) == "transformers"
    assert loaders.choose(tuned, gguf, Verdict(True)) == fast
    assert loaders.choose(tuned, gguf, Verdict(False, "its answers differ")) == "transformers"
    assert loaders.choose(ModelRef(base="tiny-random-gemma3"), entry("tiny-random-gemma3")) == (
        "transformers"
    )
    by_name = tuned.model_copy(update={"engine": "llama.cpp"})
    with pytest.raises(EngineUnavailable, match="its answers differ"):
        loaders.choose(by_name, gguf, Verdict(False, "its answers differ"))
    if installed:  # not checked yet: loading it makes and checks the fast path
        assert loaders.choose(by_name, gguf) == "llama.cpp"
    else:
        with pytest.raises(EngineUnavailable, match="GGUF"):
            loaders.choose(by_name, gguf)
    with pytest.raises(EngineUnavailable, match="CUDA"):
        loaders.choose(ModelRef(base="gemma-3-270m", engine="vllm"), gguf)


@pytest.fixture(scope="module")
def bundled(models_dir: Path):  # type: ignore[no-untyped-def]
    """The llama.cpp engine of the bundled Gemma 3 270M GGUF."""
    pytest.importorskip("llama_cpp", reason="the gguf extra is not installed")
    from tuneforge.inference.llamacpp_engine import LlamaCppEngine
    from tuneforge.models.tokenizer import ensure_gguf

    return LlamaCppEngine(ensure_gguf(models_dir), 2, 2048)


def test_llama_cpp_streams_the_bundled_model(bundled) -> None:  # type: ignore[no-untyped-def]
    engine = bundled
    # <eos> and <end_of_turn>; Gemma 4's `<turn|>` is three ordinary tokens here, not a stop
    assert engine.stop_ids == {1, 106}

    def answer(params: GenerationParams) -> tuple[str, Finished]:
        events = list(engine.stream(PROMPT, params, threading.Event()))
        done = events[-1]
        assert isinstance(done, Finished)
        return "".join(e.text for e in events if isinstance(e, Delta)), done

    greedy = GenerationParams(temperature=0, max_new_tokens=16)
    text, done = answer(greedy)
    assert text.strip() and done.completion_tokens <= 16 and done.prompt_tokens > 5
    assert answer(greedy)[0] == text  # greedy is deterministic
    sampled = GenerationParams(max_new_tokens=16, seed=5)
    assert answer(sampled)[0] == answer(sampled)[0]  # so is a seeded sample
    cut = text.strip()[:3]
    stopped, done = answer(greedy.model_copy(update={"stop": [cut]}))
    assert cut not in stopped and done.reason == "stop"
    with pytest.raises(KeyError):
        answer_with_adapter = engine.stream(PROMPT, greedy, threading.Event(), "adapter")
        next(answer_with_adapter)


#: Texts whose continuations the pre-trained model is sure of (no near tie between two tokens).
OPENINGS = [
    "<bos>Monday, Tuesday, Wednesday,",
    "<bos>1, 2, 3, 4, 5, 6, 7,",
    "<bos>January, February, March, April, May, June, July, August,",
    "<bos>A, B, C, D, E,",
    "<bos>one, two, three, four, five, six,",
]


def test_many_greedy_answers_decoded_together_are_those_of_one_at_a_time(
    bundled,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Greedy answers of several limits and stop strings, decoded in groups (two sequences at
    most here, so there are several groups), are each the answer the text gets alone; a sampled
    answer among them is made as a chat's is; a cancelled call ends every answer early."""
    from tuneforge.inference import llamacpp_batch

    engine = bundled
    greedy = GenerationParams(temperature=0, max_new_tokens=12)
    params = [
        greedy,
        greedy.model_copy(update={"max_new_tokens": 3}),
        greedy.model_copy(update={"stop": [" November"]}),
        GenerationParams(max_new_tokens=8, seed=3),  # sampled: one at a time
        greedy.model_copy(update={"top_k": 1, "temperature": 0.7}),  # greedy all the same
    ]
    alone = []
    for text, one in zip(OPENINGS, params, strict=True):
        events = list(engine.stream(text, one, threading.Event()))
        alone.append(("".join(e.text for e in events if isinstance(e, Delta)), events[-1]))
    heard: list[int] = []
    monkeypatch.setattr(llamacpp_batch, "MAX_SEQUENCES", 2)
    answers = engine.generate_many(
        OPENINGS, params, threading.Event(), on_answer=lambda i, _: heard.append(i)
    )
    assert sorted(heard) == list(range(len(OPENINGS)))
    assert [(a.text, a.finished) for a in answers] == alone
    assert answers[1].finished.completion_tokens == 3 and answers[1].finished.reason == "length"
    assert answers[2].finished.reason == "stop" and answers[2].text == " September, October,"
    cancelled = threading.Event()
    cancelled.set()  # ends every answer after its first token
    cut = engine.generate_many(OPENINGS[:2], params[:2], cancelled)
    assert [a.finished.completion_tokens for a in cut] == [1, 1]


def test_prompts_that_begin_alike_read_their_common_beginning_once(
    bundled,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An evaluation's prompts often share an instruction: a group of them reads it once, for
    its first sequence, copies it to the others' caches and reads only the rest of each, and
    every answer is still the one its text gets alone."""
    from llama_cpp import llama_cpp

    engine = bundled
    instruction = "<bos>Go on with this list, one item after another, as far as you can: "
    texts = [instruction + opening.removeprefix("<bos>") for opening in OPENINGS[:3]]
    greedy = GenerationParams(temperature=0, max_new_tokens=8)
    alone = []
    for text in texts:
        events = list(engine.stream(text, greedy, threading.Event()))
        alone.append("".join(e.text for e in events if isinstance(e, Delta)))
    read: list[int] = []
    decode = llama_cpp.llama_decode

    def counted(ctx, batch):  # type: ignore[no-untyped-def]
        read.append(batch.n_tokens)
        return decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", counted)
    answers = engine.generate_many(texts, [greedy] * 3, threading.Event())
    assert [a.text for a in answers] == alone
    prompts = [engine.llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts]
    shared = len(engine.llm.tokenize(instruction.encode(), add_bos=False, special=True))
    assert read[0] >= shared - 1  # the instruction (its last word may join the next token)
    assert read[1] == sum(map(len, prompts)) - 3 * read[0]
