"""What every engine does: stream a continuation of a text, stopping where it should.

An engine holds one loaded model. `stream` yields `Delta`s of new text and ends with one
`Finished`; it stops early when `cancelled` is set (the client went away). A conversation with
images holds one `<start_of_image>` per image in its text and the images' files (PNG, JPEG, ...)
in `images`, in the same order; an engine whose model does not take images raises
`InvalidInput` saying so. Stop strings are cut
by `StopScanner`, the same way for every engine, so no engine ever shows a stop string or the
text after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from tuneforge.errors import InvalidInput
from tuneforge.inference.params import GenerationParams


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Status:
    """What happens before the first token: `starting` (the inference server), `queued` (behind
    another answer), `loading` (the model), with a sentence to show."""

    phase: Literal["starting", "queued", "loading"]
    message: str


@dataclass(frozen=True)
class Finished:
    reason: Literal["stop", "length", "tool_calls"]
    prompt_tokens: int
    completion_tokens: int
    engine: str = ""
    #: Why a faster engine did not answer (a fine-tune whose llama.cpp fast path is off).
    note: str | None = None


Event = Delta | Finished


@dataclass(frozen=True)
class Answer:
    """One prompt's whole answer: its text and how it ended."""

    text: str
    finished: Finished


OnAnswer = Callable[[int, Answer], None]
"""Called with a prompt's position and its answer as soon as that answer is complete."""


class Engine(Protocol):
    name: str
    #: Memory the loaded model holds, for the cache's budget.
    memory_bytes: int

    def stream(
        self,
        text: str,
        params: GenerationParams,
        cancelled: threading.Event,
        adapter: str | None = None,
        images: Sequence[bytes] = (),
    ) -> Generator[Event, None, None]: ...


@runtime_checkable
class ManyAtOnce(Protocol):
    """An engine that answers many prompts together (for evaluations): `generate_many` returns
    the answers to `texts` in their order, each with its own `params` (and `images`), and
    `on_answer` hears each as it completes; a cancelled call ends its answers where they are."""

    def generate_many(
        self,
        texts: Sequence[str],
        params: Sequence[GenerationParams],
        cancelled: threading.Event,
        adapter: str | None = None,
        images: Sequence[Sequence[bytes]] | None = None,
        on_answer: OnAnswer | None = None,
    ) -> list[Answer]: ...


def check_many(
    texts: Sequence[str],
    params: Sequence[GenerationParams],
    images: Sequence[Sequence[bytes]] | None,
) -> list[Sequence[bytes]]:
    """`generate_many`'s check of its arguments (one set of parameters, and of images, a
    text); each text's images (none when `images` is None)."""
    if len(params) != len(texts) or (images is not None and len(images) != len(texts)):
        raise ValueError("Give one set of parameters (and of images) per text.")
    return list(images) if images is not None else [()] * len(texts)


def no_images(model: str) -> InvalidInput:
    """The error for images sent to a model that does not take them."""
    return InvalidInput(
        f"{model} does not take images: pick a vision model (such as Gemma 3 4B), or send text "
        "only."
    )


class StopScanner:
    """Feeds decoded text through, holding back what could be the start of a stop string.

    `feed` returns the text that is safe to show; `stopped` turns true once a stop string
    appeared (the text from it on is dropped); `flush` returns what was held back at the end.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.held += text
        cut = min((i for i in (self.held.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            shown, self.held = self.held[:cut], ""
            return shown
        keep = max((self._partial(s) for s in self.stops), default=0)
        shown = self.held[: len(self.held) - keep]
        self.held = self.held[len(self.held) - keep :]
        return shown

    def flush(self) -> str:
        shown, self.held = self.held, ""
        return "" if self.stopped else shown

    def _partial(self, stop: str) -> int:
        """Length of the longest end of the held text that begins `stop`."""
        for size in range(min(len(stop) - 1, len(self.held)), 0, -1):
            if stop.startswith(self.held[-size:]):
                return size
        return 0
