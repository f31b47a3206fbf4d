"""Data-parallel training over several processes: the rank contract, the process group, the
collectives the loop uses, and a local launcher.

A run with `devices` N > 1 trains in N processes (ranks). Every rank builds the same model (the
same seed), and rank 0 hands the others its resumed state (weights, optimizer, counters); each
step's micro-batches are planned for all ranks together (`Plan` with the world size) and each
rank passes its share through the model. The loss of a step is a mean over the tokens of every
rank's share (the recipe's denominator is summed over the ranks), and the gradients are summed
over the ranks before the update, so N processes with a batch of B each make exactly the update
one process makes with a batch of N x B (up to the order of float additions). Every rank then
applies the same update. Only rank 0 reports, evaluates, writes checkpoints (the same files as a
one-process run, so a checkpoint resumes with any number of processes) and saves the model.

Full fine-tuning over several CUDA GPUs shards the model with FSDP instead of keeping a copy of
it on every GPU; adapters (LoRA, QLoRA) are small, and every rank keeps them whole.

The rank contract is torchrun's: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in
the environment; `train_rank` is one rank's entry point, which any launcher (this module's
local one, or a Ray actor per rank) calls with them set. The local launcher (`launch`) starts
one process per rank on this machine and supervises them from the job's worker process: rank 0
reports through it (events, metrics, checkpoints to the artifact store), it passes a cancel
request on, and when any rank fails or dies it stops every rank and says which failed and why.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tuneforge.errors import DomainError, InvalidInput, JobCancelled
from tuneforge.training.recipe import Checkpoints, Outcome
from tuneforge.training.spec import TrainingBase

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tuneforge.training.reporting import Reporter

#: The environment variables of the rank contract (torchrun's).
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a rank waits for the others in one collective (rank 0 may be evaluating or writing
#: a checkpoint meanwhile) before it gives up.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
#: Seconds a rank is given to stop after SIGTERM before it is killed.
STOP_GRACE = 10.0
Strategy = Literal["single", "ddp", "fsdp"]
FSDP_PREFIX = "_fsdp_wrapped_module."


@dataclass(frozen=True)
class Rank:
    """Where one process stands in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Rank:
        """The rank contract from the environment (as torchrun sets it), or a clear error."""
        env = os.environ if environ is None else environ
        missing = [name for name in RANK_VARIABLES if not env.get(name)]
        if missing:
            raise InvalidInput(
                f"A training rank needs {', '.join(RANK_VARIABLES)} in its environment; "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set."
            )
        try:
            values = {name: int(env[name]) for name in RANK_VARIABLES if name != "MASTER_ADDR"}
        except ValueError as exc:
            raise InvalidInput(f"A rank variable is not a whole number: {exc}") from exc
        rank = cls(
            values["RANK"],
            values["WORLD_SIZE"],
            values["LOCAL_RANK"],
            env["MASTER_ADDR"],
            values["MASTER_PORT"],
        )
        if not 0 <= rank.rank < rank.world_size or rank.local_rank < 0:
            raise InvalidInput(
                f"RANK {rank.rank} must be from 0 to WORLD_SIZE - 1 ({rank.world_size - 1}), "
                "and LOCAL_RANK at least 0."
            )
        if not 0 < rank.master_port < 65536:
            raise InvalidInput(f"MASTER_PORT {rank.master_port} is not a port.")
        return rank

    def env(self) -> dict[str, str]:
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def world_size(spec: TrainingBase, gpus: int) -> int:
    """How many processes `spec` trains in on a machine with `gpus` CUDA GPUs, or a clear
    error when it cannot: more devices than GPUs, a trainer that trains in one process only,
    or full fine-tuning over several devices without CUDA (FSDP needs it)."""
    from tuneforge.training.registry import recipe_for

    distributed = recipe_for(spec).distributed
    if spec.devices == "auto":  # every GPU for a trainer that uses several, else one
        world = max(gpus, 1) if distributed else 1
    else:
        world = spec.devices
        if gpus and world > gpus:
            raise InvalidInput(
                f"devices is {world}, but this machine has {gpus} GPU"
                f"{'' if gpus == 1 else 's'}: set devices to {gpus} or fewer, or `auto`.",
                {"fields": ["devices"]},
            )
    if world > 1 and not distributed:
        raise InvalidInput(
            f"The {spec.trainer} trainer trains in one process so far; set devices to 1 "
            "(several devices work with sft).",
            {"fields": ["devices", "trainer"]},
        )
    if world > 1 and spec.method == "full" and not gpus:
        raise InvalidInput(
            "Full fine-tuning over several devices shards the model with FSDP, which needs "
            "CUDA GPUs; this machine has none. Set devices to 1, or train LoRA (several CPU "
            "processes then give the same result as one with the larger batch).",
            {"fields": ["devices", "method"]},
        )
    return world


def strategy(spec: TrainingBase, world: int, cuda: bool) -> Strategy:
    """How `world` processes share the work: one process alone; DDP (every rank keeps the
    whole model, gradients are summed); FSDP for full fine-tuning on CUDA GPUs (the weights,
    gradients and optimizer state are sharded over the GPUs)."""
    if world <= 1:
        return "single"
    if spec.method == "full":
        if not cuda:
            raise InvalidInput(
                "Full fine-tuning over several devices shards the model with FSDP, which "
                "needs CUDA GPUs; set devices to 1 or train LoRA.",
                {"fields": ["devices", "method"]},
            )
        return "fsdp"
    return "ddp"


def position() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def process_group(rank: Rank, cuda: bool) -> Iterator[None]:
    """This process in the run's process group (gloo on CPUs, nccl on CUDA, where the rank
    uses GPU `local_rank`), left when the block ends."""
    import torch
    import torch.distributed as dist

    if cuda:
        torch.cuda.set_device(rank.local_rank)
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"tcp://{rank.master_addr}:{rank.master_port}",
        rank=rank.rank,
        world_size=rank.world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


class PeerFailed(RuntimeError):
    """A collective failed: another rank stopped (its own error says why)."""


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:  # gloo and nccl raise RuntimeError subclasses
        raise PeerFailed(f"{what} across the training processes failed: {exc}") from exc


def _device() -> str:
    import torch
    import torch.distributed as dist

    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


def total(value: float) -> float:
    """The sum of `value` over every rank (`value` itself in one process)."""
    if position()[1] == 1:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=_device())
    with _collective("summing a step's counts"):
        dist.all_reduce(tensor)
    return float(tensor.item())


def most(value: float) -> float:
    """The largest `value` of any rank."""
    if position()[1] == 1:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=_device())
    with _collective("comparing the ranks' passes"):
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (a cancel request, an early stop)."""
    return total(1.0 if flag else 0.0) > 0


def sum_gradients(parameters: Sequence[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its sum over the ranks (one all-reduce of all of
    them, flattened); a parameter without a gradient on a rank counts as zeros there."""
    import torch
    import torch.distributed as dist

    if position()[1] == 1 or not parameters:
        return
    grads = [
        p.grad if p.grad is not None else torch.zeros_like(p, memory_format=torch.contiguous_format)
        for p in parameters
    ]
    flat = torch.cat([g.reshape(-1) for g in grads])
    with _collective("summing the gradients"):
        dist.all_reduce(flat)
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        size = grad.numel()
        parameter.grad = flat[offset : offset + size].view_as(parameter).to(parameter.dtype)
        offset += size


def share_state(
    parameters: Sequence[torch.Tensor], state: Any, optimizer: torch.optim.Optimizer
) -> Any:
    """Give every rank rank 0's trained weights, optimizer state and `state` (the loop's
    counters and a recipe's kept tensors), which rank 0 alone resumed; returns `state`."""
    import torch
    import torch.distributed as dist

    if position()[1] == 1:
        return state
    with _collective("sharing the starting state"), torch.no_grad():
        for parameter in parameters:
            dist.broadcast(parameter.data, src=0)
        carried = [state, optimizer.state_dict() if position()[0] == 0 else None]
        dist.broadcast_object_list(carried, src=0)
    if position()[0] != 0:
        optimizer.load_state_dict(carried[1])
    return carried[0]


def _forward_computes_loss(model: nn.Module) -> None:
    """Make `model`'s forward compute our loss (`causal_lm_loss`): FSDP gathers the weights
    outside the decoder layers (the embeddings, which the output head shares, and the final
    norm) only inside the wrapper's forward, while the loss calls the decoder and the head
    apart. The parameters keep their names (a checkpoint's layout does not change); the
    wrapper says so with `computes_loss`, and `causal_lm_loss` then calls it."""
    import types

    from tuneforge.training.components.loss import causal_lm_loss

    def forward(self: nn.Module, batch: Any, chunk: int) -> Any:
        return causal_lm_loss(self, batch, chunk)

    model.forward = types.MethodType(forward, model)  # type: ignore[method-assign]


def shard_model(model: nn.Module, runtime_device: str) -> nn.Module:
    """Full fine-tuning on several CUDA GPUs: the model wrapped in FSDP, each decoder layer a
    shard unit, the original parameters kept visible (for the optimizer and the checkpoints'
    names), rank 0's initial weights given to every rank."""
    import torch
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    if not runtime_device.startswith("cuda") or not torch.cuda.is_available():
        raise InvalidInput(
            "FSDP shards a full fine-tune over CUDA GPUs; this machine has none.",
            {"fields": ["devices", "method"]},
        )
    layers = {type(m) for m in model.modules() if type(m).__name__.endswith("DecoderLayer")}
    _forward_computes_loss(model)
    sharded: nn.Module = FullyShardedDataParallel(
        model,
        auto_wrap_policy=ModuleWrapPolicy(layers) if layers else None,
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        device_id=torch.cuda.current_device(),
        use_orig_params=True,
        sync_module_states=True,
    )
    sharded.computes_loss = True  # type: ignore[assignment]
    return sharded


def shard(spec: TrainingBase, model: nn.Module, device: str) -> nn.Module:
    """`model` as this rank trains it: sharded with FSDP for a full fine-tune over several
    CUDA GPUs, else itself."""
    _, world = position()
    if world > 1 and strategy(spec, world, device.startswith("cuda")) == "fsdp":
        return shard_model(model, device)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FullyShardedDataParallel

    return isinstance(model, FullyShardedDataParallel)


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside an FSDP wrapper (itself when not sharded)."""
    inner: nn.Module = model.module if is_sharded(model) else model  # type: ignore[assignment]
    return inner


@contextlib.contextmanager
def whole(model: nn.Module, sharded: bool, writeback: bool = True) -> Iterator[None]:
    """A sharded model's whole weights on every rank for the block (every rank must enter
    it); what the block writes into them is kept when `writeback`. Nothing for a whole model."""
    if not sharded:
        yield
        return
    from torch.distributed.fsdp import FullyShardedDataParallel

    with FullyShardedDataParallel.summon_full_params(model, writeback=writeback):
        yield


def share_whole(parameters: Sequence[torch.Tensor], state: Any) -> Any:
    """Inside `whole`: rank 0's weights and `state` on every rank."""
    import torch
    import torch.distributed as dist

    carried = [state]
    with _collective("sharing the starting state"), torch.no_grad():
        for parameter in parameters:
            dist.broadcast(parameter.data, src=0)
        dist.broadcast_object_list(carried, src=0)
    return carried[0]


def _parameter_names(model: nn.Module) -> list[str]:
    from tuneforge.training.runtime import trainable_parameters

    # Outside `whole`, FSDP names its parameters with its wrappers' prefix.
    return [name.replace(FSDP_PREFIX, "") for name, _ in trainable_parameters(model)]


def optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, sharded: bool
) -> dict[str, Any] | None:
    """A sharded optimizer's whole state, gathered from every rank (each must call it) in the
    layout of an unsharded optimizer's `state_dict` (parameters by their index); None when
    the optimizer is not sharded (its own `state_dict` is whole)."""
    if not sharded:
        return None
    import torch
    from torch.distributed.fsdp import (
        FullOptimStateDictConfig,
        FullStateDictConfig,
        FullyShardedDataParallel,
        StateDictType,
    )

    offload = torch.cuda.is_available()  # GPU state gathered into the CPU's memory
    with (
        _collective("gathering the optimizer state"),
        FullyShardedDataParallel.state_dict_type(
            model,
            StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(offload_to_cpu=offload),
            FullOptimStateDictConfig(offload_to_cpu=offload),
        ),
    ):
        named = FullyShardedDataParallel.optim_state_dict(model, optimizer)
    index = {name: i for i, name in enumerate(_parameter_names(model))}
    return {
        "state": {index[name]: value for name, value in named["state"].items()},
        "param_groups": [
            {**group, "params": [index[name] for name in group["params"]]}
            for group in named["param_groups"]
        ],
    }


def load_sharded_optimizer(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any] | None
) -> None:
    """Give a sharded optimizer its shard of the whole state `saved` (rank 0's; None on the
    other ranks, and on rank 0 when the run starts afresh). Every rank must call it."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel

    carried = [saved]
    with _collective("sharing the optimizer state"):
        dist.broadcast_object_list(carried, src=0)
    whole_state = carried[0]
    if whole_state is None:
        return
    names = _parameter_names(model)
    named = {
        "state": {names[i]: value for i, value in whole_state["state"].items()},
        "param_groups": [
            {**group, "params": [names[i] for i in group["params"]]}
            for group in whole_state["param_groups"]
        ],
    }
    with _collective("sharing the optimizer state"):
        shard_state = FullyShardedDataParallel.optim_state_dict_to_load(model, optimizer, named)
    optimizer.load_state_dict(shard_state)


def whole_state_dict(model: nn.Module) -> dict[str, Any]:
    """A sharded model's whole weights, gathered on rank 0 (every rank must call it; the
    others get an empty dict), for saving the model."""
    import torch
    from torch.distributed.fsdp import (
        FullStateDictConfig,
        FullyShardedDataParallel,
        StateDictType,
    )

    offload = torch.cuda.is_available()  # GPU weights gathered into the CPU's memory
    config = FullStateDictConfig(offload_to_cpu=offload, rank0_only=True)
    with (
        _collective("gathering the weights"),
        FullyShardedDataParallel.state_dict_type(model, StateDictType.FULL_STATE_DICT, config),
    ):
        weights: dict[str, Any] = model.state_dict()
    return weights


class SilentReporter:
    """The reporter of ranks other than 0: rank 0 reports for the run."""

    def progress(self, fraction: float, message: str | None = None) -> None:
        pass

    def metrics(self, values: dict[str, float], step: int) -> None:
        pass

    def samples(self, step: int, items: list[dict[str, Any]]) -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass

    @property
    def cancel_requested(self) -> bool:
        return False  # rank 0's request reaches every rank through the loop


@dataclass(frozen=True)
class RankTask:
    """What every rank of a run trains (picklable: it crosses to the rank's process)."""

    spec: TrainingBase
    model_path: Path
    train_records: list[dict[str, Any]]
    test_records: list[dict[str, Any]]
    workdir: Path
    secrets: dict[str, str] = field(default_factory=dict)


def train_rank(
    task: RankTask, reporter: Reporter, checkpoints: Checkpoints | None = None
) -> Outcome:
    """One rank's training, with the rank contract in the environment (`Rank.from_env`):
    joins the process group, runs the recipe and leaves the group. Only rank 0 uses
    `reporter` and `checkpoints`; its outcome is the run's (its `output` the saved model)."""
    import torch

    from tuneforge.training.registry import recipe_for

    rank = Rank.from_env()
    cuda = torch.cuda.is_available()
    if not cuda:  # the ranks on one machine share its cores
        from tuneforge.hardware import detect_hardware

        local = int(os.environ.get("LOCAL_WORLD_SIZE") or rank.world_size)
        torch.set_num_threads(max(1, detect_hardware().cores // local))
    first = rank.rank == 0
    with process_group(rank, cuda):
        return recipe_for(task.spec).train(
            task.spec,
            task.model_path,
            task.train_records,
            task.test_records,
            reporter if first else SilentReporter(),
            task.workdir,
            checkpoints if first else None,
            secrets=task.secrets,
        )


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
) -> Outcome:
    """Train `spec` on this machine in as many processes as its `devices` say (`gpus`: the
    CUDA GPUs to count with, default those this process may use); one process trains here,
    in this one."""
    from tuneforge.training.registry import recipe_for

    if gpus is None:  # the GPUs this process may use (CUDA_VISIBLE_DEVICES, as Ray sets it)
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    world = world_size(spec, gpus)
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
    return _Supervisor(task, world, reporter, checkpoints or Checkpoints()).run()


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
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
        self, task: RankTask, world: int, reporter: Reporter, checkpoints: Checkpoints
    ) -> None:
        self.task, self.world, self.reporter, self.checkpoints = task, world, reporter, checkpoints
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
        port = _free_port()
        latest = self.checkpoints.latest
        processes = [
            self.context.Process(
                target=_rank_process,
                args=(
                    self.task,
                    Rank(rank, self.world, rank, "127.0.0.1", port),
                    latest if rank == 0 else None,
                    self.events,
                    self.replies,
                    self.cancel,
                    _launcher(),
                ),
                name=f"tuneforge-rank-{rank}",
                daemon=True,
            )
            for rank in range(self.world)
        ]
        self.reporter.log(f"training in {self.world} processes (data-parallel)")
        try:
            for process in processes:
                process.start()
            self._watch(processes)
        finally:
            self._stop(processes)
        self._drain(0.1)  # what the ranks said before they ended
        return self._result(processes)

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
        reported = {f.rank for f in self.failures}
        died = any(
            p.exitcode not in (None, 0) and rank not in reported for rank, p in enumerate(processes)
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
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                raise RuntimeError(
                    f"Training process {rank} of {self.world} ended unexpectedly ({how}); "
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
) -> None:
    """A rank's process under the local launcher (`launcher`: its pid and start time)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher, which stops us
    threading.Thread(target=_orphaned, args=launcher, daemon=True).start()
    os.environ.update(rank.env())
    os.environ["LOCAL_WORLD_SIZE"] = str(rank.world_size)
    first = rank.rank == 0
    reporter: Reporter = _Relay(events, cancel) if first else SilentReporter()
    checkpoints = _relayed_checkpoints(latest, events, replies) if first else None
    code = 0
    try:
        outcome = train_rank(task, reporter, checkpoints)
        if first:
            events.put(("outcome", outcome))
    except BaseException as exc:  # every failure is reported, then this process ends
        if not isinstance(exc, JobCancelled | DomainError):
            traceback.print_exc(file=sys.stderr)
        details = exc.details if isinstance(exc, DomainError) else {}
        peer = isinstance(exc, PeerFailed)
        events.put(("failed", rank.rank, type(exc).__name__, str(exc), details, peer))
        code = 1
    finally:
        events.close()
        events.join_thread()
    sys.exit(code)
