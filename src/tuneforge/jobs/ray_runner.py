"""The Ray executor: runs each job in a Ray actor on an existing cluster.

One loop does what the local runner's does, every `poll_interval`, for jobs on Ray:

* **Take queued jobs** while this runner holds fewer than `max_concurrent_jobs` (per-user
  quotas apply when jobs are queued, as always). Taking a job reserves it with a compare-and-set
  (it stays `queued`, with `executor` = `ray`, `worker_host` = `ray:{namespace}`, its
  `resources` and what it waits for in `waiting`) and creates its actor: a detached actor named
  `tuneforge-job-{id}` in `ray_namespace`, asking for the job's `Resources` (CPUs, GPUs, memory,
  GPU type). Ray starts it on a node that has them; until then the job waits and says for what,
  and no heartbeat is expected of it. A training in N > 1 processes asks instead for a
  placement group of N bundles, one per process (each its share of the resources), named as
  its actor and detached too, with the PACK strategy (Ray fills a node, then spreads over
  others); its actor takes bundle 0 and starts the other ranks in bundles 1..N-1
  (`ray_peers.py`), and the job waits while the group is pending. The actor moves the job to
  `running` (with its node's address and process id) and runs the ordinary worker
  (`jobs/worker.py`) in a thread: heartbeats, events, logs and the final status go to the
  database exactly as with local workers.
* **Settle lost jobs**: a running job whose actor died (`ray.kill`, a killed process, a lost
  node) fails with "worker lost: Ray actor died: ..." as soon as Ray reports it, and one whose
  heartbeat stopped fails after `heartbeat_timeout` (its actor is killed). A reserved job whose
  actor is gone before it started goes back to the queue.
* **Cancel**: a cancelling job's actor is asked to stop (`cancel()`, which the worker sees as a
  cancel request, as a local worker sees SIGTERM); after `cancel_timeout` the actor is killed.

Actors are detached: they outlive the server, and a restarted server adopts them by name. An
actor ends itself once its job is settled (with its placement group, which takes the ranks'
actors with it); the runner ends any that linger (a cancelled job's pending actor, say), and
removes the group of a job whose actor died.

What reaches the actor: its job id, the reservation tag, and a reference to the settings (as
JSON, put in Ray's object store, without the gateway's proxy secret); the settings carry the
database URL and secret key, which the worker needs, so they never appear in the actor's
arguments, its name or Ray's task listings, and nothing here logs them. An operator sees in
Ray's dashboard or `ray list actors` the actor's name, its resources and its state; its output
is in the Ray worker logs of its node. Nodes need the database and the artifact store reachable
(this is why a `file://` store is refused), and a `data_dir` and `model_cache_dir` they can
write (the worker's scratch and model cache there).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tuneforge.db.repositories.jobs import oldest_queued
from tuneforge.db.repositories.ray_jobs import (
    active_on_ray,
    job_states,
    release,
    reserve,
    reserved_by,
    set_waiting,
    taken_by_ray,
)
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Job, utcnow
from tuneforge.jobs.executor_check import ExecutorUnavailable, check_executor
from tuneforge.jobs.resources import Resources, job_processes, job_resources
from tuneforge.jobs.runner_loop import RunnerLoop
from tuneforge.jobs.states import StaleTransition, transition
from tuneforge.jobs.status import ACTIVE, JobStatus
from tuneforge.settings import Settings
from tuneforge.training.parallel.ray_ranks import first_line, why_actor_ended

log = logging.getLogger(__name__)

ACTOR_PREFIX = "tuneforge-job-"
#: The names of the actors of a training's other ranks: `{actor_name(job)}{RANK_INFIX}{rank}`.
RANK_INFIX = "-rank-"
#: Threads of a job's actor: `run()`, and `cancel()` / `join()` calls beside it.
ACTOR_THREADS = 4
#: Seconds a job's actor stays after its job settled (its answer reaches the runner), then ends.
ACTOR_LINGER = 2.0
#: Seconds a reserved job may have no actor before it goes back to the queue (the runner that
#: reserved it may be creating it).
MISSING_GRACE = 10.0
#: Seconds between looks for the actors of finished jobs.
TIDY_INTERVAL = 2.0
#: A job's status the actor returns when it never started the job (cancelled meanwhile).
NOT_STARTED = "not started"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ExecutorUnavailable(
            "TUNEFORGE_EXECUTOR=ray needs Ray on this machine: install the `ray` extra "
            "(pip install 'tuneforge[ray]')."
        ) from exc
    return ray


def actor_name(job_id: str) -> str:
    return f"{ACTOR_PREFIX}{job_id}"


def job_of(name: str) -> str | None:
    """The job whose actor or placement group has this name (not a rank's actor's, which
    ends with its job's group)."""
    if not name.startswith(ACTOR_PREFIX) or RANK_INFIX in name:
        return None
    return name[len(ACTOR_PREFIX) :]


class JobActor:
    """One job in a Ray worker process (the runner wraps it with `ray.remote`)."""

    def __init__(self, job_id: str, tag: str, settings_json: list[Any]) -> None:
        ray = import_ray()
        self.job_id = job_id
        self.tag = tag
        self.settings = Settings.model_validate_json(ray.get(settings_json[0]))
        self.terminate = threading.Event()
        self.finished = threading.Event()

    def run(self) -> str:
        """Start the reserved job and run it to its end; its final status (or `NOT_STARTED`)."""
        from tuneforge.jobs.worker import run

        try:
            if not self._start():
                return NOT_STARTED
            return run(self.job_id, self.settings, self.terminate).value
        finally:
            self.finished.set()
            # The job is settled: free the node's resources even when no runner is there to
            # end this actor (after a moment, so the answer reaches the runner first).
            threading.Timer(ACTOR_LINGER, self._end).start()

    def _end(self) -> None:
        ray = import_ray()
        group = ray.util.get_current_placement_group()
        if group is not None:  # the job's, with the actors of its other ranks
            ray.util.remove_placement_group(group)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def _start(self) -> bool:
        """Move the job from reserved to running here, unless it was cancelled meanwhile."""
        engine = make_engine(self.settings.resolved_database_url)
        try:
            with transaction(make_sessionmaker(engine)) as session:
                job = session.get(Job, self.job_id)
                if job is None or job.status != JobStatus.QUEUED or job.worker_host != self.tag:
                    return False
                transition(
                    session,
                    job,
                    JobStatus.RUNNING,
                    worker_host=import_ray().util.get_node_ip_address(),
                    worker_pid=os.getpid(),
                    waiting=None,
                )
            return True
        except StaleTransition:
            return False
        finally:
            engine.dispose()

    def cancel(self) -> None:
        """Ask the job to stop (what SIGTERM is to a local worker)."""
        self.terminate.set()

    def join(self) -> None:
        """Return when `run()` has returned: what a runner that adopted the actor waits on."""
        self.finished.wait()

    def pid(self) -> int:
        return os.getpid()


class RayRunner(RunnerLoop):
    thread_name = "tuneforge-ray-runner"

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        check_executor(settings)
        super().__init__(settings)
        self.ray = import_ray()
        self.factory = factory
        self.namespace = settings.ray_namespace
        self.tag = f"ray:{self.namespace}"
        self._actors: dict[str, Any] = {}  # job id -> actor handle
        self._runs: dict[str, Any] = {}  # job id -> the ref of its run() (or join())
        self._cancelled: set[str] = set()
        self._missing: dict[str, float] = {}  # reserved job id -> when its actor was first missed
        self._tidied = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the cluster (once per process; a second runner shares the connection)."""
        if not self.ray.is_initialized():
            self.ray.init(
                address=self.settings.ray_address,
                namespace=self.namespace,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )

    def start(self) -> None:
        self.connect()
        super().start()

    def stop(self, *, terminate_workers: bool = False) -> None:
        """Stop the loop. Actors keep running (a new runner adopts them) unless told otherwise."""
        self.stop_loop()
        if terminate_workers:
            for job_id in list(self._actors):
                self._kill(job_id)

    def tick(self) -> None:
        self.connect()
        self.sweep()
        self.deliver_cancels()
        self.claim()
        self.tidy()

    # -- actors ------------------------------------------------------------------------------
    def _handle(self, job_id: str) -> Any | None:
        """The job's actor, adopted by name when this runner did not start it; None if gone."""
        if job_id in self._actors:
            return self._actors[job_id]
        try:
            handle = self.ray.get_actor(actor_name(job_id), namespace=self.namespace)
        except ValueError:
            return None
        self._actors[job_id] = handle
        return handle

    def _outcome(self, job_id: str) -> tuple[bool, str | None]:
        """Whether the job's actor is over, and if it died, why (None: it returned)."""
        ref = self._runs.get(job_id)
        if ref is None:
            handle = self._handle(job_id)
            if handle is None:
                return True, f"Ray actor {actor_name(job_id)} is gone"
            ref = self._runs[job_id] = handle.join.remote()
        ready, _ = self.ray.wait([ref], timeout=0)
        if not ready:
            return False, None
        try:
            self.ray.get(ref)
        except Exception as exc:
            return True, why_actor_ended(exc)
        return True, None

    def _kill(self, job_id: str) -> None:
        handle = self._handle(job_id)
        if handle is not None:
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception as exc:  # already gone
                log.debug("could not kill the actor of job %s: %s", job_id, exc)
        self._remove_group(job_id)
        self._forget(job_id)

    def _group(self, job_id: str) -> Any | None:
        """The job's placement group (a training in several processes has one), if any."""
        try:
            return self.ray.util.get_placement_group(actor_name(job_id))
        except ValueError:
            return None

    def _remove_group(self, job_id: str) -> None:
        group = self._group(job_id)
        if group is not None:
            self.ray.util.remove_placement_group(group)

    def _forget(self, job_id: str) -> None:
        self._actors.pop(job_id, None)
        self._runs.pop(job_id, None)
        self._cancelled.discard(job_id)

    def _launch(self, job_id: str, resources: Resources, processes: int) -> bool:
        """Create the job's actor (in a placement group of `processes` bundles when there are
        several) and call its `run()`; False when the actor or group of an earlier attempt
        still holds the name (they are ended; the job is taken again later)."""
        self._forget(job_id)
        if self._group(job_id) is not None or self._handle(job_id) is not None:
            self._kill(job_id)
            return False
        public = self.settings.model_copy(update={"proxy_secret": None})
        settings_ref = self.ray.put(public.model_dump_json())
        options = resources.ray_options()
        if processes > 1:
            options = self._placed(job_id, resources.share(processes), processes)
        actor = self.ray.remote(JobActor).options(
            name=actor_name(job_id),
            namespace=self.namespace,
            lifetime="detached",
            max_concurrency=ACTOR_THREADS,
            max_restarts=0,
            **options,
        )
        handle = actor.remote(job_id, self.tag, [settings_ref])
        self._actors[job_id] = handle
        self._runs[job_id] = handle.run.remote()
        return True

    def _placed(self, job_id: str, share: Resources, processes: int) -> dict[str, Any]:
        """Create the job's placement group, one bundle of `share` per process; the options
        of its actor, in bundle 0."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        group = self.ray.util.placement_group(
            [share.bundle() for _ in range(processes)],
            strategy="PACK",
            name=actor_name(job_id),
            lifetime="detached",
        )
        placed = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
        return {**share.ray_options(), "scheduling_strategy": placed}

    # -- the duties --------------------------------------------------------------------------
    def sweep(self) -> None:
        """Settle jobs whose actor died or whose heartbeat stopped; give reserved jobs whose
        actor is gone before it started back to the queue."""
        timeout = timedelta(seconds=self.settings.heartbeat_timeout)
        with transaction(self.factory) as session:
            for job in active_on_ray(session):
                over, reason = self._outcome(job.id)
                if over and reason is not None:
                    reason = f"worker lost: {reason}"
                elif job.heartbeat_at is not None and utcnow() - job.heartbeat_at > timeout:
                    reason = f"worker lost: no heartbeat for {self.settings.heartbeat_timeout:g} s"
                    self._kill(job.id)
                if reason is not None:
                    self._settle(session, job, reason)
                    self._remove_group(job.id)  # its other ranks' actors end with it
                    self._forget(job.id)
            for job in reserved_by(session, self.tag):
                if self._vanished_lately(job.id):
                    continue
                over, reason = self._outcome(job.id)
                if over and release(session, job.id, self.tag):
                    log.warning("job %s goes back to the queue: %s", job.id, reason or "not run")
                    self._kill(job.id)
                elif not over and job.resources is not None:  # what the cluster lacks may change
                    waiting = self._waiting(Resources.model_validate(job.resources))
                    if waiting != job.waiting:
                        set_waiting(session, job.id, self.tag, waiting)

    def _vanished_lately(self, job_id: str) -> bool:
        """Whether the reserved job has no actor, for less than `MISSING_GRACE` so far: another
        runner of this namespace may have reserved it a moment ago and be creating it."""
        if job_id in self._runs or self._handle(job_id) is not None:
            self._missing.pop(job_id, None)
            return False
        first = self._missing.setdefault(job_id, time.monotonic())
        if time.monotonic() - first < MISSING_GRACE:
            return True
        del self._missing[job_id]
        return False

    def deliver_cancels(self) -> None:
        """Ask a cancelling job's actor to stop once; kill it when it overstays the timeout."""
        grace = timedelta(seconds=self.settings.cancel_timeout)
        with transaction(self.factory) as session:
            for job in active_on_ray(session):
                if job.status != JobStatus.CANCELLING:
                    continue
                handle = self._handle(job.id)
                if job.id not in self._cancelled:
                    if handle is not None:
                        handle.cancel.remote()
                    self._cancelled.add(job.id)
                elif job.cancel_requested_at and utcnow() - job.cancel_requested_at > grace:
                    self._kill(job.id)
                    reason = f"did not stop within {self.settings.cancel_timeout:g} s; killed"
                    self._settle(session, job, reason)

    def _has_gpus(self) -> bool:
        """Whether the cluster has GPUs now (trainings then ask for them)."""
        try:
            return bool(self.ray.cluster_resources().get("GPU", 0))
        except Exception:
            return False

    def _waiting(self, resources: Resources) -> str:
        """What a reserved job waits for, and what the cluster lacks, if it lacks it."""
        text = f"Waiting for the Ray cluster to start it: {resources.describe()}"
        try:
            total = self.ray.cluster_resources()
        except Exception:
            return f"{text}."
        missing = []
        if resources.gpus > total.get("GPU", 0):
            missing.append(f"{total.get('GPU', 0):g} GPUs")
        if resources.cpus > total.get("CPU", 0):
            missing.append(f"{total.get('CPU', 0):g} CPUs")
        if resources.memory_gb and resources.memory_gb * 1e9 > total.get("memory", 0):
            missing.append(f"{total.get('memory', 0) / 1e9:.1f} GB memory")
        if missing:
            text += f" (its nodes have {', '.join(missing)} now)"
        return f"{text}."

    def claim(self) -> None:
        """Reserve queued jobs and start their actors while this runner holds fewer than
        `max_concurrent_jobs`."""
        while not self._stop.is_set():
            with transaction(self.factory) as session:
                if taken_by_ray(session, self.tag) >= self.settings.max_concurrent_jobs:
                    return
                job = oldest_queued(session)
                if job is None:
                    return
                job_id, kind = job.id, job.kind
                resources = job_resources(session, self.settings, job, has_gpus=self._has_gpus())
                processes = job_processes(job)
                waiting = self._waiting(resources)
                if not reserve(session, job_id, self.tag, resources.model_dump(), waiting):
                    continue
            try:
                launched = self._launch(job_id, resources, processes)
            except Exception as exc:
                self._remove_group(job_id)
                self._fail_to_start(job_id, f"could not start a Ray actor: {first_line(exc)}")
                continue
            if not launched:
                with transaction(self.factory) as session:
                    release(session, job_id, self.tag)
                return  # the earlier actor is on its way out: next time
            log.info("job %s (%s) sent to Ray, asking for %s", job_id, kind, resources.describe())

    def _fail_to_start(self, job_id: str, reason: str) -> None:
        with transaction(self.factory) as session:
            row = session.get(Job, job_id)
            if row is None or row.status != JobStatus.QUEUED:
                return
            try:
                transition(session, row, JobStatus.RUNNING, worker_host=None, waiting=None)
                transition(session, row, JobStatus.FAILED, error=reason)
                log.warning("job %s failed: %s", job_id, reason)
            except StaleTransition:
                pass  # cancelled meanwhile

    def tidy(self) -> None:
        """End the actors of finished (or deleted) jobs, this runner's and any left over."""
        if time.monotonic() - self._tidied < TIDY_INTERVAL:
            return
        self._tidied = time.monotonic()
        names = self.ray.util.list_named_actors(all_namespaces=True)
        ours = [job_of(entry["name"]) for entry in names if entry["namespace"] == self.namespace]
        groups = [  # of the actors that died, or were never created
            job_of(group["name"])
            for group in self.ray.util.placement_group_table().values()
            if group["state"] != "REMOVED"
        ]
        job_ids = sorted({job for job in ours + groups if job} | set(self._actors))
        with transaction(self.factory) as session:
            states = job_states(session, job_ids)
        for job_id in job_ids:
            status = states.get(job_id)
            if status is None or (status not in ACTIVE and status != JobStatus.QUEUED):
                self._kill(job_id)
