"""Full fine-tuning over several CUDA GPUs: the model sharded with FSDP (weights, gradients and
optimizer state spread over the GPUs), and gathering its whole weights and optimizer state for
checkpoints and the saved model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tuneforge.errors import InvalidInput
from tuneforge.training.parallel.ranks import collective, position, strategy
from tuneforge.training.spec import TrainingBase

if TYPE_CHECKING:
    import torch
    from torch import nn

#: The prefix FSDP gives the names of the parameters it wraps.
FSDP_PREFIX = "_fsdp_wrapped_module."


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
    with collective("sharing the starting state"), torch.no_grad():
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
        collective("gathering the optimizer state"),
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
    with collective("sharing the optimizer state"):
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
    with collective("sharing the optimizer state"):
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
        collective("gathering the weights"),
        FullyShardedDataParallel.state_dict_type(model, StateDictType.FULL_STATE_DICT, config),
    ):
        weights: dict[str, Any] = model.state_dict()
    return weights
