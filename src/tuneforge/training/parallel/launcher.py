"""The launcher of a run's ranks.

The launcher (`launch`) starts one process per rank on this machine and
supervises them from the job's worker process: rank 0 reports through it (events, metrics,
checkpoints to the artifact store), it passes a cancel request on, and when any rank fails or
dies it stops every rank and says which failed and why.

Given `peers` (a job in a Ray placement group, `ray_ranks.py`), rank 0 is still a process here
and ranks 1..N-1 are Ray actors in the group's other bundles, on whichever nodes Ray placed
them; the same supervisor watches them (an actor looks like a process to it).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import InvalidInput, JobCancelled
from tuneforge.training.parallel.rank_training import (
    RankTask,
    SilentReporter,
    failure,
    train_rank,
)
from tuneforge.training.parallel.ranks import Rank, world_size
from tuneforge.training.recipe import Checkpoints, Outcome
from tuneforge.training.spec import TrainingBase

if TYPE_CHECKING:
    from tuneforge.training.parallel.ray_ranks import Peers
    from tuneforge.training.reporting import Reporter

#: Seconds a rank is given to stop after SIGTERM before it is killed.
STOP_GRACE = 10.0


def launch(
    spec: TrainingBase,
    model_path: Path,
    train_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    reporter: Reporter,
    workdir: Path,
    checkpoints: Checkpoints | None = None,
    secrets: Mapping[str, str] | None = None,
    gpus: int | None = None,
    peers: Peers | None = None,
) -> Outcome:
    """Train `spec` in as many processes as its `devices` say (`gpus`: the CUDA GPUs to count
    with, default those this process may use); one process trains here, in this one. With
    `peers`, ranks 1..N-1 run in their Ray actors (each with the GPUs this process has)."""
    from tuneforge.training.registry import recipe_for

    if gpus is None:  # the GPUs this process may use (CUDA_VISIBLE_DEVICES, as Ray sets it)
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    world = world_size(spec, gpus if peers is None else gpus * peers.size)
    if world == 1:
        return recipe_for(spec).train(
            spec, model_path, train_records, test_records, reporter, workdir, checkpoints, secrets
        )
    task = RankTask(
        spec,
        model_path,
        [dict(r) for r in train_records],
        [dict(r) for r in test_records],
        workdir,
        dict(secrets or {}),
    )
    return _Supervisor(task, world, reporter, checkpoints or Checkpoints(), peers).run()


#: What the process that starts the ranks imports once (each rank is forked from it, with
#: these loaded): torch and the model libraries take seconds to import.
PRELOAD = ["torch", "transformers", "peft", "tuneforge.training.recipes.sft"]


def _context() -> Any:
    """Where rank processes come from: a fork server (a clean process that imported the heavy
    libraries once, so a run's ranks, and the next run's, start in a moment), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _launcher() -> tuple[int, float]:
    """This process's pid and start time, by which its ranks know it is still there."""
    import psutil

    return os.getpid(), psutil.Process().create_time()


def _free_port(host: str) -> int:
    """A port that is free on `host` (an address of this machine), or on every interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class _Failure:
    rank: int
    kind: str  # the exception's class name
    message: str
    details: dict[str, Any]
    peer: bool  # a collective failed because another rank stopped

    def error(self, world: int) -> BaseException:
        if self.kind == "JobCancelled":
            return JobCancelled(self.message)
        if self.kind == "InvalidInput":
            return InvalidInput(self.message, self.details)
        return RuntimeError(
            f"Training process {self.rank} of {world} failed ({self.kind}: {self.message}); "
            "every process of the run was stopped."
        )


class _Supervisor:
    """Starts the ranks, relays rank 0's reports, passes cancel on, and stops every rank when
    one fails."""

    def __init__(
        self,
        task: RankTask,
        world: int,
        reporter: Reporter,
        checkpoints: Checkpoints,
        peers: Peers | None,
    ) -> None:
        self.task, self.world, self.reporter, self.checkpoints = task, world, reporter, checkpoints
        self.peers = peers
        self.context = _context()
        self.events: Any = self.context.Queue()
        self.replies: Any = self.context.Queue()
        self.cancel = self.context.Event()
        self.older = iter(checkpoints.older)
        self.outcome: Outcome | None = None
        self.failures: list[_Failure] = []
        self.stored_error: BaseException | None = None  # a checkpoint the store refused
        self.stopped: set[int] = set()

    def run(self) -> Outcome:
        if self.peers is None:
            processes = self._local_ranks()
            self.reporter.log(f"training in {self.world} processes (data-parallel)")
        else:
            processes = self._ray_ranks(self.peers)
            self.reporter.log(
                f"training in {self.world} processes (data-parallel) on Ray; process 0 of "
                f"{self.world} on Ray node {self.peers.node} ({self.peers.address})"
            )
        try:
            for process in processes:
                process.start()
            self._watch(processes)
        finally:
            self._stop(processes)
        self._drain(0.1)  # what the ranks said before they ended
        return self._result(processes)

    def _process(self, rank: Rank, local_world: int) -> Any:
        """A local process of `rank`."""
        return self.context.Process(
            target=_rank_process,
            args=(
                self.task,
                rank,
                self.checkpoints.latest if rank.rank == 0 else None,
                self.events,
                self.replies,
                self.cancel,
                _launcher(),
                local_world,
            ),
            name=f"tuneforge-rank-{rank.rank}",
            daemon=True,
        )

    def _local_ranks(self) -> list[Any]:
        port = _free_port("127.0.0.1")
        ranks = [Rank(rank, self.world, rank, "127.0.0.1", port) for rank in range(self.world)]
        return [self._process(rank, self.world) for rank in ranks]

    def _ray_ranks(self, peers: Peers) -> list[Any]:
        """Rank 0 here, the others in Ray actors: each alone on its GPU (LOCAL_RANK 0)."""
        from tuneforge.training.parallel.ray_ranks import RayRankProcess

        port = _free_port("")
        ranks = [Rank(rank, self.world, 0, peers.address, port) for rank in range(self.world)]
        shared = peers.share(self.task)
        return [self._process(ranks[0], 1)] + [
            RayRankProcess(peers, rank, shared, self._handle) for rank in ranks[1:]
        ]

    def _watch(self, processes: list[Any]) -> None:
        """Relay the ranks' messages until every rank has ended; when one fails, the others
        are given a moment to end on their own, then stopped."""
        broken_since: float | None = None
        while True:
            self._drain(0.2)
            if self.reporter.cancel_requested:
                self.cancel.set()
            if all(p.exitcode is not None for p in processes):
                break
            if not self._broken(processes):
                broken_since = None
            elif broken_since is None:
                broken_since = time.monotonic()
            elif time.monotonic() - broken_since > 2.0:
                for rank, process in enumerate(processes):
                    if process.exitcode is None:
                        self.stopped.add(rank)
                        process.terminate()
                return  # `_stop` kills what does not end

    def _drain(self, timeout: float) -> None:
        """Handle every waiting message (waiting up to `timeout` for the first)."""
        try:
            self._handle(self.events.get(timeout=timeout))
            while True:
                self._handle(self.events.get_nowait())
        except queue.Empty:
            return

    def _broken(self, processes: list[Any]) -> bool:
        """Whether a rank failed (not a cancel, nor another rank's failure seen from it) or
        ended without saying why."""
        codes = [p.exitcode for p in processes]  # a Ray rank reports its failure on the way
        reported = {f.rank for f in self.failures}
        died = any(
            code not in (None, 0) and rank not in reported for rank, code in enumerate(codes)
        )
        return died or any(not f.peer and f.kind != "JobCancelled" for f in self.failures)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, *rest = message
        if kind == "progress":
            self.reporter.progress(*rest)
        elif kind == "metrics":
            self.reporter.metrics(*rest)
        elif kind == "samples":
            self.reporter.samples(*rest)
        elif kind == "log":
            self.reporter.log(*rest)
        elif kind == "checkpoint":
            path, step = rest
            try:
                if self.checkpoints.save is not None:
                    self.checkpoints.save(Path(path), step)
            except BaseException as exc:
                self.stored_error = exc
                self.replies.put(f"{type(exc).__name__}: {exc}")
                return
            self.replies.put(None)
        elif kind == "older":
            older = next(self.older, None)
            self.replies.put(None if older is None else str(older))
        elif kind == "outcome":
            self.outcome = rest[0]
        elif kind == "failed":
            self.failures.append(_Failure(*rest))

    def _stop(self, processes: list[Any]) -> None:
        for rank, process in enumerate(processes):
            if process.is_alive():
                self.stopped.add(rank)
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process in processes:
            if process.pid is not None:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()

    def _result(self, processes: list[Any]) -> Outcome:
        if self.stored_error is not None:
            raise self.stored_error
        reported = {f.rank for f in self.failures}
        for rank, process in enumerate(processes):  # a rank that died without a word
            code = process.exitcode
            if code not in (0, None) and rank not in reported and rank not in self.stopped:
                raise RuntimeError(
                    f"Training process {rank} of {self.world} ended unexpectedly "
                    f"({_ending(process, code)}); "
                    "every process of the run was stopped."
                )
        causes = [f for f in self.failures if not f.peer] or self.failures
        cancelled = [f for f in causes if f.kind == "JobCancelled" and f.rank == 0]
        if cancelled and len(causes) == len([f for f in causes if f.kind == "JobCancelled"]):
            raise cancelled[0].error(self.world)
        errors = [f for f in causes if f.kind != "JobCancelled"]
        if errors:
            raise errors[0].error(self.world)
        if self.outcome is None:
            raise RuntimeError(
                f"The {self.world} training processes ended without a result; see the log."
            )
        return self.outcome


def _ending(process: Any, code: int) -> str:
    """How a rank's process ended, in words (a Ray rank's says why its actor ended)."""
    death = getattr(process, "death", None)
    if death is not None:
        return str(death)
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


class _Relay:
    """Rank 0's reporter in its process: every report goes to the supervisor."""

    def __init__(self, events: Any, cancel: Any) -> None:
        self.events, self.cancel = events, cancel

    def progress(self, fraction: float, message: str | None = None) -> None:
        self.events.put(("progress", fraction, message))

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.events.put(("metrics", values, step))

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        self.events.put(("samples", step, items))

    def log(self, message: str, level: str = "info") -> None:
        self.events.put(("log", message, level))

    @property
    def cancel_requested(self) -> bool:
        return bool(self.cancel.is_set())


def _relayed_checkpoints(latest: Path | None, events: Any, replies: Any) -> Checkpoints:
    """Rank 0's checkpoints: each one written is stored by the supervisor (before training
    goes on), and the older ones are fetched by it when resuming needs them."""

    def save(path: Path, step: int) -> None:
        events.put(("checkpoint", str(path), step))
        error = replies.get()
        if error is not None:
            raise RuntimeError(f"The checkpoint of step {step} could not be stored: {error}")

    def older() -> Iterable[Path]:
        while True:
            events.put(("older",))
            path = replies.get()
            if path is None:
                return
            yield Path(path)

    return Checkpoints(latest=latest, save=save, older=older())


def _orphaned(launcher: int, started: float) -> None:
    """End this rank when the launcher that started it is gone (killed with SIGKILL, say:
    it could not stop its ranks); `started`: its start time, so that no later process with
    its pid is taken for it."""
    import psutil

    while True:
        time.sleep(1.0)
        try:
            alive = psutil.Process(launcher).create_time() == started
        except psutil.Error:  # no such process
            alive = False
        if not alive:
            os._exit(1)


def _rank_process(
    task: RankTask,
    rank: Rank,
    latest: Path | None,
    events: Any,
    replies: Any,
    cancel: Any,
    launcher: tuple[int, float],
    local_world: int,
) -> None:
    """A rank's process under the launcher (`launcher`: its pid and start time; `local_world`:
    how many ranks share this machine's cores)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher, which stops us
    threading.Thread(target=_orphaned, args=launcher, daemon=True).start()
    os.environ.update(rank.env())
    os.environ["LOCAL_WORLD_SIZE"] = str(local_world)
    first = rank.rank == 0
    reporter: Reporter = _Relay(events, cancel) if first else SilentReporter()
    checkpoints = _relayed_checkpoints(latest, events, replies) if first else None
    code = 0
    try:
        outcome = train_rank(task, reporter, checkpoints)
        if first:
            events.put(("outcome", outcome))
    except BaseException as exc:  # every failure is reported, then this process ends
        events.put(failure(rank.rank, exc))
        code = 1
    finally:
        events.close()
        events.join_thread()
    sys.exit(code)
