"""Loaded models, kept between requests in an LRU cache bounded by a memory budget.

A chat never reloads its model: the first request loads it, later ones find it here. LoRA
fine-tunes share their base: the cache holds one transformers engine per base and attaches each
adapter to it once. When the loaded models exceed the budget, the least recently used ones are
dropped (never the one a request is about to use). Loading is done once per model even when many
requests for it arrive together.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tuneforge.inference.engine import Engine
from tuneforge.inference.params import ModelRef

#: Hears what loading is doing ("loading", "converting ...") before the first token.
Report = Callable[[str], None]


def _silent(message: str) -> None:
    pass


@dataclass(frozen=True)
class Key:
    engine: str
    base: str
    weights: str | None  # full fine-tuned weights replace the base's


@dataclass(frozen=True)
class Loaded:
    engine: Engine
    adapter: str | None  # the adapter to select for this request, if any
    #: Why the model is not served by the engine that would be fastest (a fine-tune whose
    #: llama.cpp fast path is off), to show with its answers.
    note: str | None = None


class ModelCache:
    def __init__(
        self,
        budget_bytes: int,
        choose: Callable[[ModelRef], str],
        load: Callable[[str, ModelRef, Report | None], Engine],
        attach: Callable[[Engine, ModelRef], str],
        prepare: Callable[[ModelRef, Report | None], str | None] | None = None,
    ) -> None:
        """`prepare(ref, report)` runs before the engine is chosen: slow first-time work that
        the choice depends on (a fine-tune's llama.cpp fast path), returning why the fastest
        engine is not used (None: it is)."""
        self.budget_bytes = budget_bytes
        self._choose, self._load, self._attach = choose, load, attach
        self._prepare = prepare
        self._engines: OrderedDict[Key, Engine] = OrderedDict()
        self._locks: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        #: How many times each model was loaded (a model loaded once serves every request).
        self.loads: Counter[str] = Counter()

    def engine_for(self, ref: ModelRef) -> str:
        """The engine that serves `ref` (a `DomainError` when none can): checked before loading."""
        return self._choose(ref)

    def get(self, ref: ModelRef, report: Report | None = None) -> Loaded:
        """The loaded model for `ref`; `report` hears "loading" (and what slow first-time work
        the loader does) when it is not loaded yet, or "queued" while another request loads it
        (None: the loader reports its slow work on stderr)."""
        say = report or _silent
        note = self._prepare(ref, report) if self._prepare is not None else None
        name = self._choose(ref)
        key = Key(name, ref.base, ref.weights(name))
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
            loaded = key in self._engines
        if not lock.acquire(blocking=False):
            say("queued" if loaded else "loading")
            lock.acquire()
        try:
            with self._lock:
                engine = self._engines.get(key)
                if engine is not None:
                    self._engines.move_to_end(key)
            if engine is None:
                say("loading")
                engine = self._load(name, ref.model_copy(update={"engine": name}), report)
                self.loads[f"{name}:{ref.base}" + (f":{key.weights}" if key.weights else "")] += 1
                with self._lock:
                    self._engines[key] = engine
            adapter = self._attach(engine, ref) if ref.needs_adapter(name) else None
            with self._lock:
                self._evict(keep=key)
        finally:
            lock.release()
        return Loaded(engine, adapter, note)

    def _evict(self, keep: Key) -> None:
        """Drop least recently used engines until the rest fit the budget. Call under the lock."""
        for key in list(self._engines):
            if self.used_bytes() <= self.budget_bytes:
                break
            if key != keep:
                del self._engines[key]

    def used_bytes(self) -> int:
        return sum(engine.memory_bytes for engine in self._engines.values())

    def status(self) -> dict[str, object]:
        with self._lock:
            loaded = [
                {"engine": k.engine, "base": k.base, "weights": k.weights, "bytes": e.memory_bytes}
                for k, e in self._engines.items()
            ]
            used = self.used_bytes()
        return {
            "budget_bytes": self.budget_bytes,
            "used_bytes": used,
            "loaded": loaded,
            "loads": dict(self.loads),
        }
