"""The LLM methods, paraphrase and back-translation: a language model rewrites whole texts.

Planning and asking are kept apart so that the model gets many requests at once. While the
variants of a batch of rows are planned (`records.plan_variants`), each text an LLM method
rewrites becomes a marker and a `Rewrite`: the text and its chain of requests (one for a
paraphrase, two for a back-translation, more when `combine: all` chains both). Which turns
are rewritten is drawn from the row's seeded generator, so it is the same on every run; what
the model answers is the model's. `Rewriter.run` then sends the batch's requests round by
round (round k holds every rewrite's k-th request) with `complete_all`, as many at once as
the generator allows, and `records.finish_variants` puts the answers in place of the markers.

A request that fails (after the generator's own retries), an empty reply, or a reply cut at
`max_tokens` does not fail the job: the variant that needed it is left out, and the reason is
counted in the dataset's warnings. The job fails, naming the first reason, when the model
answers nothing at all (every request of the job failed, or the first `HOPELESS` requests did)
or stops answering (the last `STOPPED_ANSWERING` requests in a row failed, say an endpoint that
went down halfway): going on would only leave out every variant, slowly.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tuneforge.data.augment.spec import BackTranslationMethod, LLMMethod
from tuneforge.data.synthesis.generator import (
    RETRY_DELAYS,
    Completion,
    GenerationFailed,
    Generator,
    GeneratorSpec,
    complete_all,
    open_generator,
)
from tuneforge.settings import Settings

if TYPE_CHECKING:
    from tuneforge.inference.params import ModelRef

#: Requests that fail, with none succeeding, before the job gives up on the model.
HOPELESS = 8
#: Requests in a row that fail, after some succeeded, before the job gives up on the model.
STOPPED_ANSWERING = 32
_MARK = "\x00tuneforge-rewrite:{}\x00"
_MARKED = re.compile("\x00tuneforge-rewrite:(\\d+)\x00")
Messages = list[dict[str, str]]


def generator_key(spec: GeneratorSpec) -> str:
    """One generator serves every method with the same settings."""
    return spec.model_dump_json()


@dataclass(frozen=True)
class Step:
    """One request of a rewrite: the template filled with the text as it is by then."""

    generator: str
    template: str
    fields: tuple[tuple[str, str], ...]
    max_tokens: int

    def messages(self, text: str) -> Messages:
        return [{"role": "user", "content": self.template.format(text=text, **dict(self.fields))}]


def steps_of(method: LLMMethod) -> list[Step]:
    """The requests `method` makes of a text."""
    key, limit = generator_key(method.generator), method.generator.max_tokens
    if isinstance(method, BackTranslationMethod):
        fields = (("language", method.language), ("source_language", method.source_language))
        return [
            Step(key, method.prompt, fields, limit),
            Step(key, method.back_prompt, fields, limit),
        ]
    return [Step(key, method.prompt, (), limit)]


@dataclass
class Rewrite:
    """A text to rewrite, its requests, and in the end its new text or why it has none."""

    text: str
    steps: list[Step]
    result: str | None = None
    failure: str | None = None


@dataclass
class Planner:
    """Collects the texts LLM methods rewrite while variants are planned (see the module)."""

    rewrites: list[Rewrite] = field(default_factory=list)

    def edit(self, method: LLMMethod, chosen: set[int]) -> Callable[[str], str]:
        """The edit that marks the `chosen` rewritable texts (counted in visiting order)."""
        seen = -1

        def edit(text: str) -> str:
            nonlocal seen
            if not rewritable_text(text):
                return text
            seen += 1
            if seen not in chosen:
                return text
            marked = _MARKED.fullmatch(text)
            if marked is not None:  # an earlier LLM method's text: one more link in its chain
                self.rewrites[int(marked[1])].steps += steps_of(method)
                return text
            self.rewrites.append(Rewrite(text, steps_of(method)))
            return _MARK.format(len(self.rewrites) - 1)

        return edit


_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u00ab": "\u00bb"}
_FENCED = re.compile(r"\A```[\w-]*\n(.*?)\n?```\Z", re.S)
_LEAD_IN = re.compile(
    r"\A(?:sure[,!.]?\s*)?(?:here(?: is|'s)|this is)[^\n]{0,80}"
    r"(?:paraphrase|rewrit|translat|version)[^\n]{0,40}:\s*\n",
    re.I,
)


def cleaned(reply: str, source: str) -> str:
    """The model's reply without what models add around the text asked for, unless the source
    had it too: a lead-in line ("Here is the paraphrase:"), a code fence, enclosing quotes."""
    text = reply.strip()
    if not _LEAD_IN.match(source):
        text = _LEAD_IN.sub("", text, count=1).strip()
    fenced = _FENCED.match(text)
    if fenced and not source.lstrip().startswith("```"):
        text = fenced[1].strip()
    close = _QUOTES.get(text[:1])
    if close and len(text) > 1 and text.endswith(close) and not source.strip().startswith(text[0]):
        text = text[1:-1].strip()
    return text


def rewritable_text(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def put_back(rewrites: Sequence[Rewrite]) -> tuple[Callable[[str], str], Callable[[], bool]]:
    """An edit that puts each marked text's result in place, and whether one had none."""
    missing = False

    def put(text: str) -> str:
        nonlocal missing
        marked = _MARKED.fullmatch(text)
        if marked is None:
            return text
        done = rewrites[int(marked[1])]
        if done.result is None:
            missing = True
            return text
        return done.result

    return put, lambda: missing


class Rewriter:
    """Sends rewrites' requests to their generators and keeps the counts: requests, tokens,
    time, and the reasons of those that failed."""

    def __init__(
        self,
        generators: Mapping[str, Generator],
        should_stop: Callable[[], bool] = lambda: False,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self.generators = generators
        self.should_stop = should_stop
        self.on_request = on_request
        self.requests = 0
        self.succeeded = 0
        self.answered = 0  # requests the model answered (usefully or not)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seconds = 0.0
        self.reasons: Counter[str] = Counter()
        self.skipped_variants = 0
        self.failing = 0  # requests failed in a row
        self.last_reason = ""

    def _hopeless(self) -> bool:
        never = self.succeeded == 0 and self.requests - self.succeeded >= HOPELESS
        return never or self.failing >= STOPPED_ANSWERING

    def run(self, rewrites: Sequence[Rewrite]) -> None:
        """Fill in each rewrite's `result` (or its `failure`)."""
        current = [r.text for r in rewrites]
        began = time.perf_counter()
        for depth in range(max((len(r.steps) for r in rewrites), default=0)):
            live = [i for i, r in enumerate(rewrites) if r.failure is None and depth < len(r.steps)]
            for key in dict.fromkeys(rewrites[i].steps[depth].generator for i in live):
                group = [i for i in live if rewrites[i].steps[depth].generator == key]
                self._round(key, group, depth, rewrites, current)
                if self.should_stop() or self._hopeless():
                    break
        self.seconds += time.perf_counter() - began
        for i, rewrite in enumerate(rewrites):
            if rewrite.failure is None and rewrite.result is None:
                if self.should_stop() or self._hopeless():
                    rewrite.failure = "not sent: the job stopped"
                else:
                    rewrite.result = current[i]
        self.check()

    def _round(
        self,
        key: str,
        group: list[int],
        depth: int,
        rewrites: Sequence[Rewrite],
        current: list[str],
    ) -> None:
        asked = [False] * len(group)

        def on_done(j: int, result: Completion | GenerationFailed) -> None:
            i, step = group[j], rewrites[group[j]].steps[depth]
            asked[j] = True
            self.requests += 1
            reason = None
            if isinstance(result, GenerationFailed):
                reason = str(result)[:300] or "the request failed"
            else:
                self.answered += 1
                self.prompt_tokens += result.prompt_tokens
                self.completion_tokens += result.completion_tokens
                text = cleaned(result.text, current[i])
                if not text:
                    reason = "the model's reply was empty"
                elif result.completion_tokens >= step.max_tokens:
                    reason = "the model's reply was cut at max_tokens (raise it for long texts)"
                else:
                    current[i] = text
                    self.succeeded += 1
                    self.failing = 0
            if reason is not None:
                rewrites[i].failure = reason
                self.reasons[reason] += 1
                self.failing += 1
                self.last_reason = reason
            if self.on_request is not None:
                self.on_request()

        complete_all(
            self.generators[key],
            [rewrites[i].steps[depth].messages(current[i]) for i in group],
            on_done,
            lambda: self.should_stop() or self._hopeless(),
        )
        for j, done in enumerate(asked):
            if not done and rewrites[group[j]].failure is None:
                rewrites[group[j]].failure = "not sent: the job stopped"

    def check(self) -> None:
        """Raise when the model has answered nothing usable (see the module)."""
        failed = self.requests - self.succeeded
        if self.succeeded == 0 and failed and (self._hopeless() or failed == self.requests):
            reason = self.reasons.most_common(1)[0][0]
            raise GenerationFailed(
                f"The model answered none of the first {failed:,} requests usefully: {reason}"
            )
        if self.failing >= STOPPED_ANSWERING:
            raise GenerationFailed(
                f"The model stopped answering after {self.succeeded:,} useful replies: the "
                f"last {self.failing:,} requests failed ({self.last_reason})"
            )

    def summary(self) -> list[str]:
        """Lines for the dataset's warnings: requests, tokens, and what was left out, why."""
        lines = [
            f"{self.requests:,} requests to the model ({self.prompt_tokens:,} prompt and "
            f"{self.completion_tokens:,} completion tokens)."
        ]
        if self.skipped_variants:
            why = "; ".join(f"{n:,}: {reason}" for reason, n in self.reasons.most_common(3))
            lines.append(
                f"{self.skipped_variants:,} variants left out because a request failed ({why})."
            )
        return lines


def open_generators(
    methods: Iterable[LLMMethod],
    keys: Mapping[str, str],
    settings: Settings,
    refs: Mapping[str, ModelRef] | None = None,
    delays: Sequence[float] = RETRY_DELAYS,
) -> dict[str, Generator]:
    """One generator per distinct generator spec of `methods`, each with its API key from
    `keys` (by secret name); a local model as `refs` resolved it for the owner (by its id).
    Close them with `close_all`."""
    opened: dict[str, Generator] = {}
    try:
        for method in methods:
            key, spec = generator_key(method.generator), method.generator
            if key not in opened:
                secret = getattr(spec, "api_key_secret", None)
                ref = (refs or {}).get(spec.model) if spec.kind == "local" else None
                opened[key] = open_generator(
                    spec, api_key=keys.get(secret or ""), settings=settings, ref=ref, delays=delays
                )
    except BaseException:
        close_all(opened)
        raise
    return opened


def close_all(generators: Mapping[str, Generator]) -> None:
    for generator in generators.values():
        generator.close()


def key_secrets(methods: Iterable[LLMMethod]) -> set[str]:
    """The names of the secrets that hold the methods' API keys."""
    return {
        name for m in methods if (name := getattr(m.generator, "api_key_secret", None)) is not None
    }
