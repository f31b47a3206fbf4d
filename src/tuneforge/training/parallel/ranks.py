"""Where a process stands in a data-parallel run (the rank contract), how many ranks a spec
trains in, the run's process group, and the collectives the training loop uses (each a no-op
in a one-process run)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tuneforge.errors import InvalidInput
from tuneforge.training.spec import TrainingBase

if TYPE_CHECKING:
    import torch

#: The environment variables of the rank contract (torchrun's).
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a rank waits for the others in one collective (rank 0 may be evaluating or writing
#: a checkpoint meanwhile) before it gives up.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
Strategy = Literal["single", "ddp", "fsdp"]
T = TypeVar("T")


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
        raise InvalidInput(one_process(spec.trainer), {"fields": ["devices", "trainer"]})
    if world > 1 and spec.method == "full" and not gpus:
        raise InvalidInput(
            "Full fine-tuning over several devices shards the model with FSDP, which needs "
            "CUDA GPUs; this machine has none. Set devices to 1, or train LoRA (several CPU "
            "processes then give the same result as one with the larger batch).",
            {"fields": ["devices", "method"]},
        )
    return world


def one_process(trainer: str) -> str:
    """Why a spec of `trainer` (a one-process trainer) may not ask for several devices."""
    from tuneforge.training.registry import recipes

    several = [recipe.trainer for recipe in recipes() if recipe.distributed]
    named = ", ".join(several[:-1]) + (" and " if len(several) > 1 else "") + several[-1]
    return (
        f"The {trainer} trainer trains in one process so far: set devices to 1 (several "
        f"devices work with {named})."
    )


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
def collective(what: str) -> Iterator[None]:
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
    with collective("summing a step's counts"):
        dist.all_reduce(tensor)
    return float(tensor.item())


def most(value: float) -> float:
    """The largest `value` of any rank."""
    if position()[1] == 1:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=_device())
    with collective("comparing the ranks' passes"):
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def gathered(part: T) -> list[T]:
    """Every rank's `part` (any picklable value: a step's per-example results), in rank order
    (`[part]` in one process)."""
    world = position()[1]
    if world == 1:
        return [part]
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    with collective("gathering the ranks' results"):
        dist.all_gather_object(parts, part)
    return parts


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
    with collective("summing the gradients"):
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
    with collective("sharing the starting state"), torch.no_grad():
        for parameter in parameters:
            dist.broadcast(parameter.data, src=0)
        carried = [state, optimizer.state_dict() if position()[0] == 0 else None]
        dist.broadcast_object_list(carried, src=0)
    if position()[0] != 0:
        optimizer.load_state_dict(carried[1])
    return carried[0]
