"""Batched decoding in the transformers engine (`generate_many`, what evaluations use), on the
tiny random models: every row's answer is the one it gets alone (greedy and seeded sampling,
with an adapter, with images per row), rows that finish leave the batch, each answer is
reported as it completes, and a cancel ends every answer between two steps."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.images import png
from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.hf_engine import TransformersEngine
from tuneforge.inference.params import GenerationParams
from tuneforge.models.chat_template import render

GREEDY = GenerationParams(temperature=0.0, max_new_tokens=10)
QUESTIONS = [
    "Hi",
    "Name three colours.",
    "What is 2 plus 3? Reply as <answer>N</answer>.",
    "Write one long sentence about the sea, the sky and the mountains far away.",
    "Why?",
]


def prompt(text: str, images: int = 0) -> str:
    parts = [{"type": "image"}] * images + [{"type": "text", "text": text}]
    return render([{"role": "user", "content": parts}], add_generation_prompt=True)


def alone(
    engine: TransformersEngine,
    text: str,
    params: GenerationParams,
    adapter: str | None = None,
    images: tuple[bytes, ...] = (),
) -> tuple[str, Finished]:
    events = list(engine.stream(text, params, threading.Event(), adapter, images))
    done = events[-1]
    assert isinstance(done, Finished)
    return "".join(e.text for e in events if isinstance(e, Delta)), done


@pytest.fixture(scope="module")
def engine(tiny_model: Path, tiny_adapter: Path) -> TransformersEngine:
    loaded = TransformersEngine(tiny_model)
    loaded.add_adapter("tuned", tiny_adapter)
    return loaded


@pytest.mark.parametrize("adapter", [None, "tuned"])
def test_greedy_batched_answers_equal_one_at_a_time(
    engine: TransformersEngine, adapter: str | None
) -> None:
    texts = [prompt(q) for q in QUESTIONS]
    # Different lengths and a stop string: rows end at different steps and leave the batch.
    params = [GREEDY.model_copy(update={"max_new_tokens": 4 + 3 * i}) for i in range(len(texts))]
    expected = [alone(engine, text, p, adapter) for text, p in zip(texts, params, strict=True)]
    heard: list[int] = []
    answers = engine.generate_many(
        texts, params, threading.Event(), adapter, on_answer=lambda i, _: heard.append(i)
    )
    assert [(a.text, a.finished) for a in answers] == expected
    assert sorted(heard) == list(range(len(texts)))
    # The shortest prompts are decoded first; within a batch the shortest answer ends first.
    assert heard[0] != len(texts) - 1
    number, full = next((i, t) for i, (t, _) in enumerate(expected) if len(t.strip()) >= 4)
    stop = full.strip()[1:3]
    pair = [texts[0], texts[number]]
    stopped = engine.generate_many(
        pair, [GREEDY, GREEDY.model_copy(update={"stop": [stop]})], threading.Event(), adapter
    )
    assert stopped[1].finished.reason == "stop"
    assert stopped[1].text == alone(engine, pair[1], GREEDY, adapter)[0].split(stop)[0]
    assert stopped[0].text == alone(engine, pair[0], GREEDY, adapter)[0]


def test_sampled_rows_draw_with_their_own_seed_as_alone(engine: TransformersEngine) -> None:
    texts = [prompt(QUESTIONS[1])] * 3 + [prompt(q) for q in QUESTIONS[2:]]
    params = [GenerationParams(max_new_tokens=8, seed=seed) for seed in range(len(texts))]
    answers = engine.generate_many(texts, params, threading.Event(), "tuned")
    expected = [alone(engine, text, p, "tuned")[0] for text, p in zip(texts, params, strict=True)]
    assert [a.text for a in answers] == expected
    assert len({a.text for a in answers[:3]}) > 1  # one prompt, three seeds, different draws


def test_batch_size_follows_memory_and_is_bounded(engine: TransformersEngine) -> None:
    small = engine.batch_size(32, 16)
    assert 1 <= small <= 16
    assert engine.batch_size(100_000, 8_000) <= small
    assert engine.batch_size(10**9, 10**9) == 1


def test_a_cancel_ends_every_answer_between_steps(engine: TransformersEngine) -> None:
    cancelled = threading.Event()
    texts = [prompt(q) for q in QUESTIONS[:3]]
    heard: list[int] = []

    def cancel(index: int, _: object) -> None:
        heard.append(index)
        cancelled.set()

    first = [GREEDY.model_copy(update={"max_new_tokens": 2})]
    answers = engine.generate_many(texts, first + [GREEDY] * 2, cancelled, on_answer=cancel)
    assert heard[0] == 0 and sorted(heard) == [0, 1, 2]
    assert all(a.finished.completion_tokens < 10 for a in answers)


def test_rows_with_their_own_images_answer_as_alone(tiny_vision_model: Path) -> None:
    engine = TransformersEngine(tiny_vision_model)
    rows = [
        (prompt("Which colour?", 1), (png("red", size=200, seed=1),)),
        (prompt("Hello there, what is this?"), ()),
        (prompt("Compare them.", 2), (png("blue", seed=2), png("green", seed=3))),
    ]
    texts = [text for text, _ in rows]
    images = [pictures for _, pictures in rows]
    answers = engine.generate_many(texts, [GREEDY] * 3, threading.Event(), images=images)
    expected = [alone(engine, text, GREEDY, None, pictures) for text, pictures in rows]
    assert [(a.text, a.finished) for a in answers] == expected
