"""The `dataset_synthesis` job: extract the stored documents, chunk them, have the model write
examples for each chunk (several requests at once), curate them, and store the pairs kept as a
new raw dataset whose rows name their document, pages, section and chunk.

Each finished chunk is appended to a checkpoint in the job's working directory (one JSON line,
flushed and fsync'd) before the next is reported, so a resumed job (after a cancel, a failure
or a killed worker) sends no request for a chunk it has already finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tuneforge.data.documents import Chunk, Document, chunk_documents, extract, gemma_counter
from tuneforge.data.stored import dataset_prefix, store_raw
from tuneforge.data.synthesis.curate import judge_spec
from tuneforge.data.synthesis.generator import (
    Completion,
    EndpointGenerator,
    GenerationFailed,
    Generator,
    LocalGenerator,
    complete_all,
    open_generator,
)
from tuneforge.data.synthesis.pipeline import chunk_requests, finish, rows_of_chunk
from tuneforge.data.synthesis.spec import SynthesisSpec
from tuneforge.db.repositories.secrets import secret_values
from tuneforge.db.tables import Dataset, User
from tuneforge.errors import InvalidInput
from tuneforge.evaluation.judge import Judge
from tuneforge.jobs.context import JobContext
from tuneforge.jobs.endpoints import check_generator, check_judges
from tuneforge.jobs.inputs import usable_model
from tuneforge.jobs.kinds.dataset import DatasetJobSpec
from tuneforge.jobs.kinds.synthesis import SynthesisResult
from tuneforge.jobs.workers.dataset_process import dataset_of, saved
from tuneforge.storage import ArtifactStore, artifact_prefix

CHECKPOINT = "chunks.jsonl"
SYNC_SECONDS = 30.0  # the checkpoint is copied to the artifact store at most this often
REPORT_SECONDS = 0.5  # progress, metrics and samples are reported at most this often
SAMPLES_KEPT = 8  # the last pairs kept that the live view shows
FAILURES_IN_A_ROW = 3  # chunks the model failed to answer one after the other end the job
#: Row fields that say where a pair comes from, not what it says.
PROVENANCE = frozenset({"document", "pages", "section", "chunk_id", "chunk_index", "task"})
GENERATION_FAILED = "generation_failed"


@dataclass
class Finished:
    """One chunk's outcome, as its checkpoint line holds it."""

    chunk_id: str
    rows: list[dict[str, Any]]
    drops: dict[str, int]
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Checkpoint:
    """The chunks finished so far, one JSON line each, appended and fsync'd as they finish.
    A line cut short by a killed worker is dropped when read (and the file cut back to the
    lines before it), so its chunk is simply generated again.

    With a `store` and `key`, the file is also copied to the artifact store (`sync`, every
    SYNC_SECONDS and when the generation ends), and `read` takes the chunks of both copies:
    a job resumed by a worker on another machine skips what the first one finished."""

    def __init__(
        self, path: Path, store: ArtifactStore | None = None, key: str | None = None
    ) -> None:
        self.path = path
        self.store = store
        self.key = key
        self.synced = time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> dict[str, Finished]:
        done = _finished_in(self.path, cut=True)
        if self.store is None or self.key is None or not self.store.exists(self.key):
            return done
        stored = self.path.with_name(self.path.name + ".stored")
        with self.store.open(self.key) as source, stored.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        elsewhere = {k: v for k, v in _finished_in(stored, cut=False).items() if k not in done}
        stored.unlink()
        for finished in elsewhere.values():
            self.append(finished)
        return done | elsewhere

    def append(self, finished: Finished) -> None:
        line = json.dumps(finished.__dict__, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self.path.open("ab") as file:
            file.write(line.encode())
            file.flush()
            os.fsync(file.fileno())

    def sync(self, force: bool = False) -> None:
        """Copy the file to the artifact store (at most every SYNC_SECONDS unless `force`)."""
        if self.store is None or self.key is None or not self.path.exists():
            return
        if force or time.monotonic() - self.synced >= SYNC_SECONDS:
            self.store.put_file(self.key, self.path)
            self.synced = time.monotonic()

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)
        if self.store is not None and self.key is not None:
            self.store.delete(self.key)


def _finished_in(path: Path, *, cut: bool) -> dict[str, Finished]:
    """The chunks in a checkpoint file, up to its first line that is not one (with `cut`, the
    file is cut back to the lines before it)."""
    done: dict[str, Finished] = {}
    if not path.exists():
        return done
    good = 0
    with path.open("rb") as file:
        for line in file:
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("cut short")
                finished = Finished(**json.loads(line))
            except (ValueError, TypeError):
                break
            done[finished.chunk_id] = finished
            good += len(line)
    if cut and good != path.stat().st_size:
        with path.open("r+b") as file:
            file.truncate(good)
    return done


@dataclass
class Tally:
    """What the job has made so far: reported as metrics, and its result."""

    total: int
    done: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    samples: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))

    def add(self, finished: Finished, chunk: Chunk | None) -> None:
        self.done += 1
        self.kept += len(finished.rows)
        self.dropped.update(finished.drops)
        self.prompt_tokens += finished.prompt_tokens
        self.completion_tokens += finished.completion_tokens
        if chunk is not None:
            self.samples.extend(sample(row, chunk) for row in finished.rows)

    def values(self) -> dict[str, float]:
        return {
            "chunks_done": self.done,
            "chunks_total": self.total,
            "kept": self.kept,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            **{f"dropped/{reason}": n for reason, n in sorted(self.dropped.items())},
        }


def source_of(chunk: Chunk) -> str:
    """Where a chunk is: `manual.pdf, pages 3-4, Setup > Linux, chunk 7`."""
    parts = [chunk.document]
    if chunk.pages:
        first, last = chunk.pages[0], chunk.pages[-1]
        parts.append(f"page {first}" if first == last else f"pages {first}-{last}")
    if chunk.section:
        parts.append(chunk.section_path)
    parts.append(f"chunk {chunk.index + 1}")
    return ", ".join(parts)


def sample(row: dict[str, Any], chunk: Chunk) -> dict[str, str]:
    """A kept row as the live view shows it: its first text field as the prompt, the second as
    the answer, and the chunk it came from."""
    texts = [str(value) for key, value in row.items() if key not in PROVENANCE]
    return {
        "prompt": texts[0] if texts else "",
        "answer": "\n\n".join(texts[1:]),
        "source": source_of(chunk),
    }


def _drop_counts(drops: Any) -> dict[str, int]:
    """The reasons of `drops` (the pipeline's dropped pairs), counted."""
    if isinstance(drops, dict):
        return {str(reason): int(n) for reason, n in drops.items()}
    counts: Counter[str] = Counter()
    for drop in drops:
        reason = drop.get("reason") if isinstance(drop, dict) else getattr(drop, "reason", drop)
        counts[str(reason)] += 1
    return dict(counts)


@dataclass(frozen=True)
class _Access:
    """What the worker reads as the owner: the API keys of the generator and of a curation
    judge, and a local model's reference."""

    generator_key: str | None
    judge_key: str | None
    ref: Any


def _access(ctx: JobContext, spec: SynthesisSpec) -> _Access:
    """The keys from the owner's secrets, checked again (an endpoint's address, the owner's
    models or the secrets may have changed since the launch)."""
    generator, judge = spec.generator, spec.curation.judge
    with ctx.transaction() as session:
        owner = session.get(User, ctx.owner_id)
        if owner is None:
            raise InvalidInput("The synthesis's owner no longer exists.")
        check_generator(generator, owner, ctx.settings)
        if judge is not None:
            check_judges([judge], owner, ctx.settings)
        wanted = {
            "generator's": generator.api_key_secret
            if isinstance(generator, EndpointGenerator)
            else None,
            "judge's": judge.api_key_secret if judge is not None else None,
        }
        keys = secret_values(session, ctx.settings, owner.id, {n for n in wanted.values() if n})
        for who, name in wanted.items():
            if name and name not in keys:
                raise InvalidInput(f"The {who} key secret {name} was deleted; set it again.")
        ref = None
        if isinstance(generator, LocalGenerator):
            ref = usable_model(session, owner, ctx.settings, generator.model).ref
    return _Access(keys.get(wanted["generator's"] or ""), keys.get(wanted["judge's"] or ""), ref)


def _documents(ctx: JobContext, target: Dataset, workdir: Path) -> list[Document]:
    """The stored documents, read (bounded; a hostile one fails the job saying why)."""
    local = workdir / "documents"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    documents: list[Document] = []
    for stored in (target.config or {})["synthesis"]["documents"]:
        path = local / Path(stored["key"]).name
        with ctx.store.open(stored["key"]) as source, path.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        documents.extend(extract(path, stored["name"]))
        path.unlink()
        ctx.check_cancelled()
    return documents


class _Reporter:
    """Reports the tally at most every REPORT_SECONDS (and when told to)."""

    def __init__(self, ctx: JobContext, tally: Tally) -> None:
        self.ctx = ctx
        self.tally = tally
        self.last = 0.0
        self.reported: dict[str, float] = {}
        self.samples_shown: list[dict[str, str]] = []

    def __call__(self, force: bool = False) -> None:
        now = time.monotonic()
        tally = self.tally
        values = tally.values()
        if values == self.reported or (not force and now - self.last < REPORT_SECONDS):
            return
        self.last, self.reported = now, values
        self.ctx.progress(
            tally.done / max(tally.total, 1),
            f"{tally.done:,} of {tally.total:,} chunks, {tally.kept:,} pairs kept",
        )
        self.ctx.metrics(values, step=tally.done)
        samples = list(tally.samples)
        if samples and samples != self.samples_shown:
            self.ctx.samples(tally.done, samples)
            self.samples_shown = samples


def generate(
    ctx: JobContext,
    generator: Generator,
    spec: SynthesisSpec,
    todo: Sequence[Chunk],
    checkpoint: Checkpoint,
    tally: Tally,
    judge: Judge | None = None,
) -> dict[str, Finished]:
    """Generate for `todo`, checkpointing each chunk as it finishes; stops sending on cancel
    and after FAILURES_IN_A_ROW failed chunks (raising the last failure)."""
    report = _Reporter(ctx, tally)
    made: dict[str, Finished] = {}
    failures: list[GenerationFailed] = []
    in_a_row = 0

    def stop() -> bool:
        return ctx.cancel_requested or in_a_row >= FAILURES_IN_A_ROW

    def on_done(index: int, result: Completion | GenerationFailed) -> None:
        nonlocal in_a_row
        chunk = todo[index]
        if isinstance(result, GenerationFailed):
            failures.append(result)
            in_a_row += 1
            tally.dropped[GENERATION_FAILED] += 1
            ctx.log(f"{source_of(chunk)}: {result.message}", "warning")
            report()
            return
        in_a_row = 0
        rows, drops = rows_of_chunk(chunk, result, spec, judge)
        finished = Finished(
            chunk.id,
            list(rows),
            _drop_counts(drops),
            result.prompt_tokens,
            result.completion_tokens,
        )
        checkpoint.append(finished)
        checkpoint.sync()
        made[chunk.id] = finished
        tally.add(finished, chunk)
        report()

    try:
        complete_all(generator, chunk_requests(list(todo), spec), on_done, stop)
    finally:
        checkpoint.sync(force=True)
    report(force=True)
    ctx.check_cancelled()
    if in_a_row >= FAILURES_IN_A_ROW:
        raise GenerationFailed(
            f"{failures[-1].message} ({in_a_row} chunks failed one after the other; the "
            f"{tally.done:,} finished are kept: resume the synthesis once the model answers.)"
        )
    return made


def _in_order(chunks: Iterable[Chunk], done: dict[str, Finished]) -> list[dict[str, Any]]:
    return [row for chunk in chunks if chunk.id in done for row in done[chunk.id].rows]


def run(spec: DatasetJobSpec, ctx: JobContext) -> SynthesisResult:
    target = dataset_of(ctx, spec.dataset_id)
    made = (target.config or {}).get("synthesis") or {}
    if not made:
        raise InvalidInput("The dataset holds no documents to synthesise from.")
    how = SynthesisSpec.model_validate(made["spec"])
    access = _access(ctx, how)
    workdir = ctx.settings.data_dir / "work" / ctx.job_id
    ctx.progress(0.0, "reading the documents")
    documents = _documents(ctx, target, workdir)
    counter = gemma_counter(ctx.settings.models_dir)
    chunks = chunk_documents(documents, how.chunking, counter)
    if len(chunks) > how.max_chunks:
        ctx.log(f"{len(chunks):,} chunks; the first {how.max_chunks:,} are used (max_chunks)")
        chunks = chunks[: how.max_chunks]
    if not chunks:
        raise InvalidInput(
            "The documents hold no text to generate from"
            + (f": {documents[0].warnings[0]}" if documents and documents[0].warnings else ".")
        )
    stored = f"{artifact_prefix(ctx.owner_id, ctx.kind, ctx.job_id)}/{CHECKPOINT}"
    checkpoint = Checkpoint(workdir / CHECKPOINT, ctx.store, stored)
    ids = {chunk.id for chunk in chunks}
    done = {key: value for key, value in checkpoint.read().items() if key in ids}
    tally = Tally(total=len(chunks))
    for finished in done.values():
        tally.add(finished, None)
    todo = [chunk for chunk in chunks if chunk.id not in done]
    pages = sum(document.pages or 0 for document in documents)
    ctx.log(
        f"{len(documents)} document(s){f', {pages:,} pages' if pages else ''}: "
        f"{len(chunks):,} chunks of at most {how.chunking.max_tokens} tokens"
        + (f"; resumed with {len(done):,} chunks already finished" if done else "")
    )
    if todo:
        judge = (
            Judge(judge_spec(how.curation.judge), access.judge_key)
            if how.curation.judge is not None
            else None
        )
        generator = open_generator(
            how.generator, api_key=access.generator_key, settings=ctx.settings, ref=access.ref
        )
        try:
            done |= generate(ctx, generator, how, todo, checkpoint, tally, judge)
        finally:
            generator.close()
            if judge is not None:
                judge.close()
    ctx.progress(1.0, "removing near-duplicates")
    rows, drops = finish(_in_order(chunks, done), how)
    tally.dropped.update(_drop_counts(drops))
    tally.kept = len(rows)
    ctx.metrics(tally.values(), step=tally.done)
    if not rows:
        reasons = ", ".join(f"{n} {reason}" for reason, n in tally.dropped.most_common())
        raise InvalidInput(
            f"No pair was kept from {len(chunks):,} chunks (dropped: {reasons or 'none made'}); "
            "loosen the curation thresholds or try another model or template."
        )
    warnings = [w for document in documents for w in document.warnings]
    if failed := tally.dropped.get(GENERATION_FAILED):
        warnings.append(f"{failed} chunk(s) got no answer from the model and gave no pairs.")
    target.fill(
        store_raw(
            ctx.store,
            dataset_prefix(target.owner_id, target.id),
            {"train": pa.Table.from_pylist(rows)},
            warnings,
        )
    )
    target.size_bytes += sum(int(d["bytes"]) for d in made["documents"])
    target.config = {
        **(target.config or {}),
        "synthesis": {**made, "job_id": ctx.job_id, "result": _summary(tally)},
    }
    ctx.log(f"kept {tally.kept:,} pairs from {len(chunks):,} chunks; {_dropped_text(tally)}")
    result = saved(ctx, target)
    checkpoint.discard()
    return SynthesisResult(**result.model_dump(), **_summary(tally))


def _summary(tally: Tally) -> dict[str, Any]:
    return {
        "chunks": tally.total,
        "kept": tally.kept,
        "dropped": dict(sorted(tally.dropped.items())),
        "prompt_tokens": tally.prompt_tokens,
        "completion_tokens": tally.completion_tokens,
    }


def _dropped_text(tally: Tally) -> str:
    if not tally.dropped:
        return "none dropped"
    return "dropped " + ", ".join(f"{n:,} {reason}" for reason, n in tally.dropped.most_common())
