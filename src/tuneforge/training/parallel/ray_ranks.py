"""The ranks of a run as Ray actors, across the nodes of a Ray cluster.

A training job in several processes runs on Ray in a placement group of one bundle per rank,
its job's actor in bundle 0 (`jobs/ray_runner.py`). There the launcher keeps rank 0 a process
of the job's actor (it reports, its checkpoints are stored and the model is saved from there)
and runs ranks 1..N-1 as `RankActor`s in bundles 1..N-1, on whichever nodes Ray placed them;
rank 0's node address and a free port there are the run's MASTER_ADDR and MASTER_PORT, and
every actor is alone on its GPU (LOCAL_RANK 0: Ray gives each its own CUDA_VISIBLE_DEVICES).

`RayRankProcess` makes such an actor look like a process to the launcher's supervisor (start,
alive, exit code, terminate, kill): a rank that raises reports why as a local rank does, and an
actor that died (killed, its node lost) ended with `death` saying so.

A rank needs the starting model's files on its node: `Peers.model` fetches or resolves them
there (the job passes what its worker does). The run's records go through Ray's object store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuneforge.training.parallel.rank_training import RankTask, SilentReporter, failure, train_rank
from tuneforge.training.parallel.ranks import Rank

#: Seconds a rank's actor may take to start in its (reserved) bundle.
START_SECONDS = 120.0


@dataclass(frozen=True)
class Peers:
    """Where the ranks of a run in a Ray placement group go (its job's actor has bundle 0)."""

    group: Any  # ray.util.placement_group.PlacementGroup
    size: int  # its bundles: one per rank
    options: dict[str, Any]  # each rank's actor options (its share of the job's resources)
    model: Callable[[Path], Path]  # the starting model's files on a node, fetched into a folder
    namespace: str
    name: str  # the ranks' actors are named "{name}{n}"
    node: str  # the Ray node of rank 0 (this process's)
    address: str  # its address, where the other ranks meet rank 0

    def share(self, task: RankTask) -> Any:
        """`task` in Ray's object store, for every rank's actor."""
        import ray

        return ray.put(task)


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message (Ray's errors carry whole tracebacks), or its class."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def why_actor_ended(exc: BaseException) -> str:
    """Why a Ray actor's call raised `exc`: the actor died (killed, its node lost), or it failed."""
    import ray

    if isinstance(exc, ray.exceptions.RayActorError):
        return f"Ray actor died: {first_line(exc)}"
    return f"Ray actor failed: {type(exc).__name__}: {first_line(exc)}"


class RankActor:
    """One rank of a run, in a Ray actor (`RayRankProcess` starts it)."""

    def where(self) -> tuple[str, str, int]:
        """Its Ray node, that node's address, and its process id."""
        import ray

        context = ray.get_runtime_context()
        return context.get_node_id(), ray.util.get_node_ip_address(), os.getpid()  # type: ignore[no-untyped-call]

    def run(
        self, task: RankTask, rank: Rank, model: Callable[[Path], Path]
    ) -> tuple[Any, ...] | None:
        """Train as `rank`; None when done, else the failure message (`rank_training.failure`)."""
        os.environ.update(rank.env())
        os.environ["LOCAL_WORLD_SIZE"] = "1"  # the only rank in its bundle's share of the node
        workdir = task.workdir / f"rank-{rank.rank}"
        try:
            mine = replace(task, model_path=model(workdir / "start"), workdir=workdir)
            train_rank(mine, SilentReporter())
        except BaseException as exc:  # reported as a local rank reports it
            return failure(rank.rank, exc)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return None


class RayRankProcess:
    """A rank's Ray actor, as the supervisor sees a rank's process; `report` receives the
    rank's messages (its node when it started, its failure)."""

    def __init__(
        self, peers: Peers, rank: Rank, task: Any, report: Callable[[tuple[Any, ...]], None]
    ) -> None:
        self.peers, self.rank, self.task, self.report = peers, rank, task, report
        self.pid: int | None = None
        self.death: str | None = None  # why its actor ended, when it died
        self._code: int | None = None
        self._actor: Any = None
        self._run: Any = None

    def start(self) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        import ray

        placed = PlacementGroupSchedulingStrategy(
            self.peers.group, placement_group_bundle_index=self.rank.rank
        )
        self._actor = (
            ray.remote(RankActor)
            .options(
                name=f"{self.peers.name}{self.rank.rank}",
                namespace=self.peers.namespace,
                max_restarts=0,
                scheduling_strategy=placed,
                **self.peers.options,
            )
            .remote()
        )
        where = self._actor.where.remote()  # an actor's calls run in order: before `run`
        self._run = self._actor.run.remote(self.task, self.rank, self.peers.model)
        try:
            node, address, self.pid = ray.get(where, timeout=START_SECONDS)
        except Exception as exc:  # it could not start: `exitcode` says why
            self.pid = -1
            self._ended(exc)
            return
        self.report(
            (
                "log",
                f"process {self.rank.rank} of {self.rank.world_size} on Ray node {node} "
                f"({address})",
                "info",
            )
        )

    def _ended(self, exc: BaseException | None) -> None:
        if exc is None:
            self._code = 0
            return
        self._code = 1
        self.death = why_actor_ended(exc)

    @property
    def exitcode(self) -> int | None:
        """None while its actor trains; 0 when it finished, 1 when it failed or died."""
        import ray

        if self._code is not None or self._run is None:
            return self._code
        ready, _ = ray.wait([self._run], timeout=0)
        if ready:
            try:
                message = ray.get(self._run)
            except Exception as exc:
                self._ended(exc)
            else:
                if message is not None:
                    self.report(message)
                self._code = 0 if message is None else 1
        return self._code

    def is_alive(self) -> bool:
        return self._run is not None and self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        import ray

        if self._run is not None:
            ray.wait([self._run], timeout=timeout)

    def terminate(self) -> None:
        """Stop the rank (an actor has no gentler end than being killed)."""
        import ray

        if self._actor is not None:
            ray.kill(self._actor, no_restart=True)

    kill = terminate
