"""The model cache: one load per model however many requests, least recently used models
dropped past the memory budget, adapters attached to their shared base."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

from tuneforge.inference.cache import ModelCache
from tuneforge.inference.engine import Event
from tuneforge.inference.params import GenerationParams, ModelRef


@dataclass
class SizedEngine:
    """Stands for a loaded model of a given size; the cache only reads `memory_bytes`."""

    name: str
    memory_bytes: int
    adapters: list[str] = field(default_factory=list)

    def stream(
        self, text: str, params: GenerationParams, cancelled: threading.Event, adapter=None
    ) -> Generator[Event, None, None]:
        yield from ()


def make_cache(budget: int, sizes: dict[str, int]) -> tuple[ModelCache, list[str]]:
    loaded: list[str] = []

    def load(engine: str, ref: ModelRef, report=None) -> SizedEngine:
        time.sleep(0.05)  # long enough for concurrent requests to overlap
        loaded.append(ref.base)
        return SizedEngine(engine, sizes[ref.base])

    def attach(engine: SizedEngine, ref: ModelRef) -> str:  # type: ignore[override]
        name = f"adapter-{ref.artifact_key}"
        if name not in engine.adapters:
            engine.adapters.append(name)
        return name

    return ModelCache(budget, lambda ref: "transformers", load, attach), loaded  # type: ignore[arg-type]


def test_a_model_is_loaded_once_for_many_concurrent_requests() -> None:
    cache, loaded = make_cache(100, {"a": 10})
    threads = [threading.Thread(target=cache.get, args=(ModelRef(base="a"),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loaded == ["a"] and cache.loads == {"transformers:a": 1}


def test_least_recently_used_models_are_dropped_past_the_budget() -> None:
    cache, loaded = make_cache(25, {"a": 10, "b": 10, "c": 10})
    cache.get(ModelRef(base="a"))
    cache.get(ModelRef(base="b"))
    cache.get(ModelRef(base="a"))  # a is now the most recently used
    cache.get(ModelRef(base="c"))  # 30 > 25: b goes
    assert [m["base"] for m in cache.status()["loaded"]] == ["a", "c"]  # type: ignore[index]
    cache.get(ModelRef(base="b"))
    assert loaded == ["a", "b", "c", "b"] and cache.used_bytes() == 20


def test_a_model_larger_than_the_budget_still_serves_alone() -> None:
    cache, _ = make_cache(5, {"a": 10, "b": 10})
    cache.get(ModelRef(base="a"))
    cache.get(ModelRef(base="b"))
    assert [m["base"] for m in cache.status()["loaded"]] == ["b"]  # type: ignore[index]


def test_adapters_share_their_base() -> None:
    cache, loaded = make_cache(100, {"a": 10})
    first = cache.get(ModelRef(base="a", artifact_key="k1", kind="adapter"))
    second = cache.get(ModelRef(base="a", artifact_key="k2", kind="adapter"))
    bare = cache.get(ModelRef(base="a"))
    assert loaded == ["a"] and first.engine is second.engine is bare.engine
    assert (first.adapter, second.adapter, bare.adapter) == ("adapter-k1", "adapter-k2", None)
    full = cache.get(ModelRef(base="a", artifact_key="k3", kind="full"))
    assert full.engine is not bare.engine and loaded == ["a", "a"]
