"""The vLLM engine's streaming, on a stand-in for vLLM.

vLLM needs CUDA, so here it is replaced by a stand-in module (`vllm`, `vllm.sampling_params`)
with the surface the engine uses: `LLM` with `get_tokenizer()` and `llm_engine`, whose
`add_request`/`step`/`abort_request` answer like vLLM's V1 `LLMEngine` with
`RequestOutputKind.DELTA` outputs (one token of a scripted answer per step for every running
request, `finished` with a finish reason on the last). The stand-in checks what vLLM's engine
needs of its callers: one call at a time, and no step without an unfinished request (a step of
the real engine then waits forever). Only our streaming logic is tested here; the real engine
runs only on CUDA machines.
"""

from __future__ import annotations

import contextlib
import enum
import json
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tuneforge.inference.engine import Delta, Event, Finished
from tuneforge.inference.params import GenerationParams

PROMPT = "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
#: The stand-in's answer, one token per piece (its end of turn ends it after the last).
ANSWER = ["Hel", "lo", ", wo", "rld", "!"]
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=32)


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class SamplingParams:
    def __init__(self, **fields: Any) -> None:
        self.fields = fields


class Tokenizer:
    """One token per character; remembers how it was asked to encode."""

    def __init__(self) -> None:
        self.special: list[bool] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.special.append(add_special_tokens)
        return [ord(c) for c in text]


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class Running:
    prompt: list[int]
    max_tokens: int
    made: int = 0


@dataclass
class LLMEngine:
    """vLLM's `LLMEngine` as the engine drives it, answering `ANSWER` to every request."""

    running: dict[str, Running] = field(default_factory=dict)
    params: list[dict[str, Any]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    steps: int = 0
    busy: threading.Lock = field(default_factory=threading.Lock)
    misuse: list[str] = field(default_factory=list)

    def add_request(self, request_id: str, prompt: dict[str, Any], params: Any) -> None:
        with self._alone():
            assert params.fields["output_kind"] is RequestOutputKind.DELTA
            self.params.append(params.fields)
            self.running[request_id] = Running(
                prompt["prompt_token_ids"], params.fields["max_tokens"]
            )

    def abort_request(self, request_ids: list[str]) -> None:
        with self._alone():
            for request_id in request_ids:
                self.aborted.append(request_id)
                self.running.pop(request_id, None)

    def step(self) -> list[RequestOutput]:
        with self._alone():
            if not self.running:
                self.misuse.append("a step with no unfinished request would wait forever")
                return []
            self.steps += 1
            outputs = []
            for request_id, request in list(self.running.items()):
                piece = ANSWER[request.made]
                request.made += 1
                reason = (
                    "stop"
                    if request.made == len(ANSWER)
                    else "length"
                    if request.made == request.max_tokens
                    else None
                )
                answer = CompletionOutput(piece, [request.made], reason)
                outputs.append(RequestOutput(request_id, request.prompt, [answer], bool(reason)))
                if reason:
                    del self.running[request_id]
            return outputs

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        if not self.busy.acquire(blocking=False):
            self.misuse.append("two calls at once")
            self.busy.acquire()
        try:
            yield
        finally:
            self.busy.release()


class LLM:
    def __init__(self, model: str, gpu_memory_utilization: float) -> None:
        self.llm_engine = LLMEngine()
        self.tokenizer = Tokenizer()

    def get_tokenizer(self) -> Tokenizer:
        return self.tokenizer


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.RequestOutputKind = RequestOutputKind  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    from tuneforge.inference.vllm_engine import VllmEngine

    made = VllmEngine(tmp_path)  # no tokenizer there: Gemma 3's format, `<end_of_turn>`
    yield made
    assert made.llm.llm_engine.misuse == []


def collect(events: Iterator[Event]) -> tuple[str, Finished]:
    seen = list(events)
    done = seen[-1]
    assert isinstance(done, Finished)
    return "".join(e.text for e in seen if isinstance(e, Delta)), done


def test_text_arrives_in_pieces_as_the_steps_make_it(engine: Any) -> None:
    vllm_engine = engine.llm.llm_engine
    events = engine.stream(PROMPT, GREEDY, threading.Event())
    for step, piece in enumerate(ANSWER, start=1):
        assert next(events) == Delta(piece)
        assert vllm_engine.steps == step  # shown after its own step, not at the end
    assert next(events) == Finished("stop", len(PROMPT), len(ANSWER))
    assert vllm_engine.aborted == []  # it finished: nothing to abort
    # The prompt keeps its own <bos>; greedy is vLLM's temperature 0
    assert engine.tokenizer.special == [False]
    assert vllm_engine.params == [
        {
            "temperature": 0.0,
            "top_p": GREEDY.top_p,
            "top_k": GREEDY.top_k,
            "max_tokens": 32,
            "repetition_penalty": GREEDY.repetition_penalty,
            "stop": ["<end_of_turn>"],
            "seed": None,
            "output_kind": RequestOutputKind.DELTA,
        }
    ]


def test_sampled_parameters_reach_vllm(engine: Any) -> None:
    params = GenerationParams(temperature=0.7, top_p=0.9, top_k=0, seed=3, max_new_tokens=8)
    collect(engine.stream(PROMPT, params, threading.Event()))
    sent = engine.llm.llm_engine.params[0]
    # top_k 0 (every token) is vLLM's -1
    assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["seed"]) == (0.7, 0.9, -1, 3)


def test_the_token_limit_ends_with_length_and_right_counts(engine: Any) -> None:
    params = GREEDY.model_copy(update={"max_new_tokens": 2})
    assert collect(engine.stream(PROMPT, params, threading.Event())) == (
        "Hello",
        Finished("length", len(PROMPT), 2),
    )


def test_a_stop_string_is_cut_and_the_request_aborted(engine: Any) -> None:
    vllm_engine = engine.llm.llm_engine
    params = GREEDY.model_copy(update={"stop": ["world"]})
    text, done = collect(engine.stream(PROMPT, params, threading.Event()))
    # "wo" was held back (it could begin the stop string), then dropped with it
    assert text == "Hello, "
    assert done == Finished("stop", len(PROMPT), 4)
    assert vllm_engine.aborted == ["tuneforge-0"] and vllm_engine.running == {}
    assert vllm_engine.steps == 4


def test_cancelling_aborts_the_request_between_steps(engine: Any) -> None:
    vllm_engine = engine.llm.llm_engine
    cancelled = threading.Event()
    events = engine.stream(PROMPT, GREEDY, cancelled)
    assert next(events) == Delta("Hel")
    cancelled.set()
    rest = list(events)
    assert rest == [Finished("length", len(PROMPT), 1)]
    assert vllm_engine.steps == 1  # no step after the cancel
    assert vllm_engine.aborted == ["tuneforge-0"] and vllm_engine.running == {}


def test_closing_the_stream_early_aborts_the_request(engine: Any) -> None:
    vllm_engine = engine.llm.llm_engine
    events = engine.stream(PROMPT, GREEDY, threading.Event())
    assert next(events) == Delta("Hel")
    events.close()  # as the inference server does when its client goes away
    assert vllm_engine.aborted == ["tuneforge-0"] and vllm_engine.running == {}


def test_answers_running_together_share_steps(engine: Any) -> None:
    vllm_engine = engine.llm.llm_engine
    first = engine.stream(PROMPT, GREEDY, threading.Event())
    second = engine.stream(PROMPT, GREEDY, threading.Event())
    assert next(first) == Delta("Hel")  # step 1: the first request
    assert next(second) == Delta("Hel")  # step 2: both requests, the first's kept for it
    assert next(first) == Delta("lo") and vllm_engine.steps == 2  # made by the second's step
    rest, done = collect(first)
    rest_of_second, second_done = collect(second)
    assert "Hello" + rest == "Hel" + rest_of_second == "Hello, world!"
    assert done == second_done == Finished("stop", len(PROMPT), len(ANSWER))
    assert vllm_engine.steps == len(ANSWER) + 1  # one after another would take 10
    assert vllm_engine.running == {} and vllm_engine.aborted == []


def test_answers_in_threads_each_get_their_own(engine: Any) -> None:
    answers: list[tuple[str, Finished]] = []
    start = threading.Barrier(3)

    def answer() -> None:
        start.wait(timeout=30)
        answers.append(collect(engine.stream(PROMPT, GREEDY, threading.Event())))

    threads = [threading.Thread(target=answer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert answers == [("Hello, world!", Finished("stop", len(PROMPT), len(ANSWER)))] * 3
    assert engine.llm.llm_engine.running == {} and engine.llm.llm_engine.aborted == []


def test_the_module_imports_without_vllm(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import tuneforge.inference.vllm_engine\n"
        "print(json.dumps(sorted({'vllm', 'torch', 'transformers'} & set(sys.modules))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
