"""The model that writes synthetic data: any OpenAI-compatible chat-completions endpoint, or a
TuneForge model (a catalog base model or a fine-tune) loaded in the worker process.

`GeneratorSpec` says which (the web process validates it; it is light: httpx and pydantic).
`open_generator` opens it in the worker; `complete_all` sends many requests at once, up to the
generator's `concurrency`, so that an endpoint serving several requests together stays busy.

`ChatEndpoint` is the one HTTP client for OpenAI-compatible endpoints: the generator and the
LLM judge (`evaluation.judge`) both call through it. It retries a 429, a 5xx or a lost
connection after each of `RETRY_DELAYS` (waiting longer when the endpoint's `Retry-After` asks,
up to `MAX_RETRY_AFTER`), and turns a refusal (401/403, 404, other 4xx) into a clear message.
The API key is only ever sent in the `Authorization` header, never logged nor put in a message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.errors import DomainError
from tuneforge.pinned import pinned_transport
from tuneforge.strict_numbers import Integer, Number

if TYPE_CHECKING:
    from tuneforge.inference.engine import Answer
    from tuneforge.inference.params import ModelRef
    from tuneforge.settings import Settings

TIMEOUT = 30.0  # seconds per judge request
GENERATION_TIMEOUT = 300.0  # seconds per generation request (a long answer from a busy server)
RETRY_DELAYS = (1.0, 4.0, 10.0)  # seconds before each retry of a 429, a 5xx or a lost connection
MAX_RETRY_AFTER = 60.0  # the longest wait a `Retry-After` header may ask for
LOCAL_BATCH = 8  # prompts a local model decodes together, at most
GATHER = 0.05  # seconds a local model waits for more requests to decode with the first
SECRET_NAME = r"^[A-Z][A-Z0-9_]{0,63}$"  # noqa: S105 (a pattern for the names of secrets)


def base_url_field(description: str) -> Any:
    """The `base_url` field of a spec naming an OpenAI-compatible endpoint (see `http_url`)."""
    return Field(min_length=1, max_length=500, description=description)


def api_key_secret_field(example: str) -> Any:
    """The `api_key_secret` field: the name of one of the user's secrets, never the key."""
    return Field(
        default=None,
        pattern=SECRET_NAME,
        description="The name of one of your secrets that holds the API key (such as "
        f"`{example}`); never the key itself. None for an API that needs no key.",
    )


def http_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host, without a trailing slash; ValueError else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("base_url must be an http:// or https:// URL")
    return url.rstrip("/")


class EndpointGenerator(BaseModel):
    """A model behind an OpenAI-compatible API (OpenAI, vLLM, Ollama, llama.cpp's server,
    another TuneForge), called with the key in one of your secrets."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["endpoint"] = Field(
        default="endpoint", description="`endpoint`: a model behind an OpenAI-compatible API."
    )
    base_url: str = base_url_field(
        "The generator's OpenAI-compatible API, up to its version: `https://api.openai.com/v1`, "
        "`http://localhost:11434/v1` (Ollama), or another TuneForge's `http://host:7860/v1`.",
    )
    model: str = Field(
        min_length=1, max_length=200, description="The generating model's name at that API."
    )
    api_key_secret: str | None = api_key_secret_field("GENERATOR_API_KEY")
    concurrency: Integer = Field(
        default=8,
        ge=1,
        le=32,
        description="Requests sent at once. A server that answers several requests together "
        "(vLLM, OpenAI, llama.cpp with parallel slots) is kept busy by as many as it serves at "
        "once; 1 for a server that answers one at a time.",
    )
    temperature: Number = Field(
        default=0.7,
        ge=0.0,
        le=2.0,
        description="Randomness of the writing: 0 always picks the likeliest words; 0.7 gives "
        "varied questions that stay on the text.",
    )
    max_tokens: Integer = Field(
        default=512, ge=1, le=4096, description="The longest reply to one chunk, in tokens."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url)


class LocalGenerator(BaseModel):
    """A TuneForge model, loaded in the job's worker process: a catalog base model or one of
    your fine-tunes. Slow on a CPU; an instruction-tuned model writes far better data than a
    base (pre-trained) one."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local"] = Field(
        default="local", description="`local`: a TuneForge model run by the job's worker."
    )
    model: str = Field(
        min_length=1,
        max_length=200,
        description="A catalog model's id (such as `gemma-3-270m`) or the id of one of your "
        "fine-tuned models.",
    )
    temperature: Number = Field(
        default=0.7, ge=0.0, le=2.0, description="Randomness of the writing (0: greedy)."
    )
    max_tokens: Integer = Field(
        default=512, ge=1, le=4096, description="The longest reply to one chunk, in tokens."
    )


GeneratorSpec = Annotated[EndpointGenerator | LocalGenerator, Field(discriminator="kind")]


class GenerationFailed(DomainError):
    """The generator could not answer a request: its message says why (a refused key, a
    missing model, an endpoint that stayed down)."""

    code = "generation_failed"


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ChatEndpoint:
    """One OpenAI-compatible chat-completions endpoint and model, through a pool of up to
    `connections` connections (close it when done). Failures raise `failure`, worded for
    `who` ("judge": "The judge endpoint refused the key ...")."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        *,
        who: str,
        failure: type[DomainError],
        delays: Sequence[float] = RETRY_DELAYS,
        timeout: float = TIMEOUT,
        connections: int = 4,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.who = who
        self.failure = failure
        self.delays = delays
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._http = httpx.Client(  # to the address its check approved (`tuneforge.pinned`)
            base_url=base_url, headers=headers, timeout=timeout, transport=pinned_transport(limits)
        )

    def close(self) -> None:
        self._http.close()

    def complete(self, messages: list[dict[str, str]], **options: Any) -> Completion:
        """The model's reply to `messages`; `options` (temperature, max_tokens) go into the
        request's body."""
        body = {"model": self.model, "messages": messages, **options}
        problem = ""
        for delay in (*self.delays, None):
            wait_for = delay
            try:
                response = self._http.post("/chat/completions", json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    problem = f"HTTP {response.status_code}"
                    if delay is not None:
                        wait_for = max(delay, _retry_after(response))
                elif response.is_error:
                    raise self._refusal(response)
                else:
                    return self._completion(response)
            if wait_for is not None:
                time.sleep(wait_for)
        attempts = len(self.delays) + 1
        raise self.failure(
            f"The {self.who} endpoint {self.base_url} did not answer after {attempts} "
            f"attempt{'s' if attempts > 1 else ''} ({problem})."
        )

    def _refusal(self, response: httpx.Response) -> DomainError:
        status = response.status_code
        if status in (401, 403):
            return self.failure(
                f"The {self.who} endpoint refused the key (HTTP {status}): check the secret "
                f"named in the {self.who}'s api_key_secret.",
                {"status": status},
            )
        if status == 404:
            return self.failure(
                f"The {self.who} endpoint answered 404 for the model {self.model!r}: check "
                "base_url (it ends with the API's version, such as /v1) and the model's name.",
                {"status": status},
            )
        return self.failure(
            f"The {self.who} endpoint refused the request (HTTP {status}): "
            f"{response.text.strip()[:200]}",
            {"status": status},
        )

    def _completion(self, response: httpx.Response) -> Completion:
        try:
            data = response.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise self.failure(
                f"The {self.who} endpoint's answer is not an OpenAI chat completion: "
                f"{response.text.strip()[:200]}"
            ) from None
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Completion(
            str(content or ""),
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
        )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _retry_after(response: httpx.Response) -> float:
    """The seconds a 429/503's `Retry-After` asks to wait (0 when absent or a date), bounded."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("retry-after", 0))))
    except ValueError:
        return 0.0


class Generator(Protocol):
    #: How many requests to have in flight at once (`complete_all`).
    concurrency: int

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """The model's reply to a chat; `GenerationFailed` saying why when there is none."""
        ...

    def close(self) -> None: ...


class EndpointModel:
    """An `EndpointGenerator` opened: safe to call from `concurrency` threads at once."""

    def __init__(
        self,
        spec: EndpointGenerator,
        api_key: str | None,
        delays: Sequence[float] = RETRY_DELAYS,
        timeout: float = GENERATION_TIMEOUT,
    ) -> None:
        self.spec = spec
        self.concurrency = spec.concurrency
        self._endpoint = ChatEndpoint(
            spec.base_url,
            spec.model,
            api_key,
            who="generator",
            failure=GenerationFailed,
            delays=delays,
            timeout=timeout,
            connections=spec.concurrency,
        )

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        return self._endpoint.complete(
            messages, temperature=self.spec.temperature, max_tokens=self.spec.max_tokens
        )

    def close(self) -> None:
        self._endpoint.close()


@dataclass
class _Waiting:
    text: str
    future: Future[Completion]


class LocalModel:
    """A `LocalGenerator` opened: the model loaded once with the transformers engine, the way
    evaluation answers with local models. Requests made from several threads at once are
    decoded together in one batch (up to `LOCAL_BATCH`) by one decoding thread."""

    def __init__(self, spec: LocalGenerator, ref: ModelRef, settings: Settings) -> None:
        from tuneforge.inference import loaders
        from tuneforge.inference.hf_engine import TransformersEngine
        from tuneforge.inference.params import GenerationParams
        from tuneforge.models.catalog import load_catalog
        from tuneforge.models.chat_template import format_of

        engine_name = "transformers"
        engine = loaders.load(engine_name, ref.model_copy(update={"engine": engine_name}), settings)
        assert isinstance(engine, TransformersEngine)
        self._engine = engine
        self._adapter = (
            loaders.attach(engine, ref, settings) if ref.needs_adapter(engine_name) else None
        )
        self._chat = format_of(load_catalog(settings.catalog_file).get(ref.base))
        self._params = GenerationParams(
            temperature=spec.temperature, max_new_tokens=spec.max_tokens
        )
        self.concurrency = LOCAL_BATCH
        self._waiting: list[_Waiting] = []
        self._wake = threading.Condition()
        self._closed = False
        self._cancelled = threading.Event()
        self._decoder = threading.Thread(target=self._decode, name="generate-local", daemon=True)
        self._decoder.start()

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        try:
            text = self._chat.render(messages, add_generation_prompt=True)
        except ValueError as exc:
            raise GenerationFailed(f"The chat cannot be rendered for the model: {exc}") from None
        waiting = _Waiting(text, Future())
        with self._wake:
            if self._closed:
                raise GenerationFailed("The local model was closed.")
            self._waiting.append(waiting)
            self._wake.notify()
        return waiting.future.result()

    def _decode(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                # Requests sent together (complete_all fills every slot at once) arrive a few
                # microseconds apart: wait briefly for them, to decode them in one batch.
                gathered = time.monotonic() + GATHER
                while len(self._waiting) < LOCAL_BATCH and not self._closed:
                    remaining = gathered - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                if self._closed:
                    for left in self._waiting:
                        left.future.set_exception(GenerationFailed("The local model was closed."))
                    self._waiting.clear()
                    return
                batch, self._waiting = self._waiting[:LOCAL_BATCH], self._waiting[LOCAL_BATCH:]
            self._answer(batch)

    def _answer(self, batch: list[_Waiting]) -> None:
        def answered(index: int, answer: Answer) -> None:
            finished = answer.finished
            batch[index].future.set_result(
                Completion(answer.text.strip(), finished.prompt_tokens, finished.completion_tokens)
            )

        try:
            self._engine.generate_many(
                [waiting.text for waiting in batch],
                [self._params] * len(batch),
                self._cancelled,
                self._adapter,
                on_answer=answered,
            )
        except Exception as exc:  # every request of the batch hears why it failed
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(
                        GenerationFailed(f"The local model failed to generate: {exc}")
                    )

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._cancelled.set()
        self._decoder.join()


def open_generator(
    spec: EndpointGenerator | LocalGenerator,
    *,
    api_key: str | None,
    settings: Settings,
    ref: ModelRef | None = None,
    delays: Sequence[float] = RETRY_DELAYS,
) -> Generator:
    """The generator `spec` names, ready to complete chats (close it when done).

    An endpoint is called with `api_key` (the value of its `api_key_secret`), retrying after
    each of `delays`. A local model is loaded here, in this (worker) process: `ref` is the model
    as the worker resolved it for the owner (`jobs.inputs.usable_model(...).ref`, needed for a
    fine-tune); without it, `spec.model` is taken as a catalog model's id."""
    if isinstance(spec, EndpointGenerator):
        return EndpointModel(spec, api_key, delays)
    if ref is None:
        from tuneforge.inference.params import ModelRef

        ref = ModelRef(base=spec.model)
    return LocalModel(spec, ref, settings)


def _attempt(generator: Generator, messages: list[dict[str, str]]) -> Completion | GenerationFailed:
    try:
        return generator.complete(messages)
    except GenerationFailed as failure:
        return failure


def complete_all(
    generator: Generator,
    requests: Sequence[list[dict[str, str]]],
    on_done: Callable[[int, Completion | GenerationFailed], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Complete every chat in `requests`, up to `generator.concurrency` at once (threads).

    `on_done(index, result)` hears each request as it finishes, in the calling thread, one at a
    time: the completion, or the `GenerationFailed` saying why there is none (the caller
    decides whether one failure ends the run). The requests that take the finished ones'
    places are sent before `on_done` is called, so the model never waits for it.
    `should_stop()` is asked before each request is sent: once it says so, no more are sent,
    and the ones in flight are awaited and reported. An exception from `on_done` stops the
    sending too, and is raised once those in flight end.
    """
    width = max(1, min(generator.concurrency, len(requests)))
    running: dict[Future[Completion | GenerationFailed], int] = {}
    sent = 0
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="generate") as pool:

        def refill() -> None:
            nonlocal sent
            while len(running) < width and sent < len(requests) and not should_stop():
                running[pool.submit(_attempt, generator, requests[sent])] = sent
                sent += 1

        refill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            finished = sorted((running.pop(future), future) for future in done)
            refill()  # the model gets its next requests before the results are handled
            for index, future in finished:
                on_done(index, future.result())
                refill()  # on_done may have asked to stop
