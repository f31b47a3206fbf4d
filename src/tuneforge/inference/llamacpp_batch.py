"""Many greedy answers at once on llama.cpp: an evaluation's samples decoded together.

Answered one after another, each sample pays for every read of the weights on its own, and on
a CPU a decoding step of a small model costs about as much for one sequence as for sixteen.
Here the prompts, in order of length, go in groups of up to `MAX_SEQUENCES` whose cache cells
add up to no more than the chat's context (so a group never needs more memory than the chat
already has). Each group gets a context of its own, beside the chat's, with a cache of its own
for each sequence, so each attends to its own cells in the order it has alone. The beginning
the group's prompts share (the chat template's opening, an instruction every sample repeats)
is read once, for the first sequence, and copied into the others' caches; the rest of every
prompt is read in one batch; then each step feeds the last token of every unfinished
sequence in one batch and picks each one's likeliest next token, as the one-at-a-time path's
greedy sampler does. A sequence leaves the batch when it ends (its turn's end, a stop string or
its token limit). Each answer is the one its prompt gets alone, up to float rounding in a near
tie (llama.cpp may multiply several rows by the weights in another order than one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tuneforge.inference.engine import Answer, Finished, OnAnswer, StopScanner
from tuneforge.inference.params import GenerationParams

#: Most sequences decoded together: a CPU is compute-bound past this, as with transformers.
MAX_SEQUENCES = 16
#: llama.cpp sizes a cache in steps of this many cells.
CELLS = 256


class Answering:
    """One answer's tokens turned into text as they come: whole UTF-8 characters only, cut
    before the first of its stop strings."""

    def __init__(self, llm: Any, stops: list[str]) -> None:
        self.llm = llm
        self.scanner = StopScanner(stops)
        self.pending = b""
        self.count = 0

    def add(self, token: int) -> str:
        """The text that `token` completes, safe to show ('' while a character or a possible
        stop string is unfinished)."""
        self.count += 1
        self.pending += self.llm.detokenize([token], special=False)
        try:
            text = self.pending.decode("utf-8")
        except UnicodeDecodeError:  # half of a multi-byte character
            return ""
        self.pending = b""
        return self.scanner.feed(text)

    @property
    def stopped(self) -> bool:
        return self.scanner.stopped

    def rest(self) -> str:
        """What was held back, once the answer ends."""
        return self.scanner.flush()


def together(params: GenerationParams) -> bool:
    """Whether an answer with `params` may be decoded in a group: a greedy one without a
    repetition penalty (which would read each sequence's own history)."""
    return params.greedy and params.repetition_penalty == 1.0


@dataclass
class _Sequence:
    index: int
    prompt: list[int]
    limit: int
    answering: Answering
    text: list[str] = field(default_factory=list)
    #: Where its logits are in the last batch.
    output: int = 0


def decode_together(
    llm: Any,
    stop_ids: set[int],
    select: Callable[[Any], None],
    prompts: Sequence[tuple[int, list[int], GenerationParams]],
    cancelled: threading.Event,
    on_answer: OnAnswer,
) -> None:
    """Greedy answers to `prompts` (each its index, token ids and settings) from `llm`'s model,
    heard by `on_answer` as each completes. `select(ctx)` sets the request's adapter on a new
    context; the answers end at a token of `stop_ids`, a stop string or their token limit, and
    where they are once `cancelled` is set."""
    cells = llm.n_ctx()
    groups: list[list[_Sequence]] = []
    for index, prompt, params in sorted(prompts, key=lambda p: len(p[1])):
        if len(prompt) >= cells:
            raise ValueError(
                f"The conversation holds {len(prompt)} tokens, more than the model's context "
                f"of {cells}."
            )
        sequence = _Sequence(
            index,
            prompt,
            min(params.max_new_tokens, cells - len(prompt)),
            Answering(llm, params.stop),
        )
        if (
            not groups
            or len(groups[-1]) == MAX_SEQUENCES
            or (len(groups[-1]) + 1) * _cells([*groups[-1], sequence]) > cells
        ):
            groups.append([])
        groups[-1].append(sequence)
    for group in groups:
        _group(llm, stop_ids, select, group, cancelled, on_answer)


def _cells(group: list[_Sequence]) -> int:
    """The cache cells each sequence of `group` has: enough for the longest prompt and answer,
    in llama.cpp's steps of `CELLS`."""
    return -(-max(len(s.prompt) + s.limit for s in group) // CELLS) * CELLS


def _group(
    llm: Any,
    stop_ids: set[int],
    select: Callable[[Any], None],
    group: list[_Sequence],
    cancelled: threading.Event,
    on_answer: OnAnswer,
) -> None:
    """Answer `group` in a context of its own: a cache of its own for each sequence, so each
    attends to its own cells only, in the order they have alone."""
    from llama_cpp import llama_cpp

    context = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    context.n_seq_max = len(group)
    context.n_ctx = len(group) * _cells(group)
    context.n_batch = sum(len(s.prompt) for s in group)
    context.kv_unified = False
    ctx = llama_cpp.llama_init_from_model(llm.model, context)
    if not ctx:
        raise RuntimeError("llama.cpp could not make a context for answers decoded together.")
    batch = llama_cpp.llama_batch_init(context.n_batch, 0, 1)
    try:
        select(ctx)
        _decode(ctx, batch, llm.n_vocab(), stop_ids, group, cancelled, on_answer)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def _decode(
    ctx: Any,
    batch: Any,
    vocabulary: int,
    stop_ids: set[int],
    group: list[_Sequence],
    cancelled: threading.Event,
    on_answer: OnAnswer,
) -> None:
    """Read the group's prompts (their common beginning once), then decode its sequences a
    step at a time until each ends."""
    import numpy as np
    from llama_cpp import llama_cpp

    shared = _shared([sequence.prompt for sequence in group])
    batch.n_tokens = 0
    if shared:
        for pos, token in enumerate(shared):
            _add(batch, token, pos, 0, last=False)
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama.cpp could not read the prompts' common beginning.")
        memory = llama_cpp.llama_get_memory(ctx)
        for seq in range(1, len(group)):
            llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        batch.n_tokens = 0
    for seq, sequence in enumerate(group):
        for pos in range(len(shared), len(sequence.prompt)):
            _add(batch, sequence.prompt[pos], pos, seq, last=pos == len(sequence.prompt) - 1)
        sequence.output = batch.n_tokens - 1
    active = list(enumerate(group))
    while active:
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama.cpp could not decode the batch of answers.")
        batch.n_tokens = 0
        going = []
        for seq, sequence in active:
            logits = llama_cpp.llama_get_logits_ith(ctx, sequence.output)
            token = int(np.argmax(np.ctypeslib.as_array(logits, shape=(vocabulary,))))
            answering = sequence.answering
            if token in stop_ids:
                _end(sequence, "stop", on_answer)
                continue
            if piece := answering.add(token):
                sequence.text.append(piece)
            if answering.stopped:
                _end(sequence, "stop", on_answer)
            elif cancelled.is_set() or answering.count >= sequence.limit:
                _end(sequence, "length", on_answer)
            else:
                _add(batch, token, len(sequence.prompt) + answering.count - 1, seq, last=True)
                sequence.output = batch.n_tokens - 1
                going.append((seq, sequence))
        active = going


def _shared(prompts: list[list[int]]) -> list[int]:
    """The tokens every prompt of a group (of two or more) begins with, leaving each at least
    its last token to read on its own (its logits are the first answer token's)."""
    if len(prompts) < 2:
        return []
    limit = min(map(len, prompts)) - 1
    first, last = min(prompts), max(prompts)  # the common beginning of all is theirs
    length = 0
    while length < limit and first[length] == last[length]:
        length += 1
    return first[:length]


def _add(batch: Any, token: int, pos: int, seq: int, *, last: bool) -> None:
    """Append `token` at `pos` of sequence `seq` to `batch`, asking for its logits if `last`."""
    at = batch.n_tokens
    batch.token[at] = token
    batch.pos[at] = pos
    batch.n_seq_id[at] = 1
    batch.seq_id[at][0] = seq
    batch.logits[at] = last
    batch.n_tokens = at + 1


def _end(sequence: _Sequence, reason: Literal["stop", "length"], on_answer: OnAnswer) -> None:
    answering = sequence.answering
    text = "".join(sequence.text) + answering.rest()
    finished = Finished(reason, len(sequence.prompt), answering.count)
    on_answer(sequence.index, Answer(text, finished))
