"""Resumable checkpoints: trained weights, optimizer state, RNG state and the loop's counters.

The learning-rate schedule and the data order are functions of the step (see `schedule.py`), so
the step restores them. A checkpoint directory is written under a temporary name and renamed when
complete; loading reads tensors with `weights_only=True`. A recipe may keep tensors of its own
with every checkpoint (`kept`: the reference log-probabilities of DPO and KTO, which a resumed
run must not recompute from a model that has moved).

Loading reads every file before it changes the model, so a checkpoint that turns out unreadable
(a truncated tensor file, a missing or malformed state) raises `UnreadableCheckpoint` and leaves
the model and optimizer as they were: the loop then falls back to an older checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tuneforge.training.runtime import trainable_parameters

WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.pt"
RNG = "rng.safetensors"
STATE = "state.json"
KEPT = "kept.safetensors"


@dataclass
class LoopState:
    """The counters a resumed run continues from."""

    step: int = 0
    best_eval_loss: float | None = None
    evaluations_without_improvement: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0  # training time so far, over every attempt


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def step_of(name: str) -> int | None:
    prefix, _, number = name.partition("-")
    return int(number) if prefix == "step" and number.isdigit() else None


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    kept: Mapping[str, torch.Tensor] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint at `directory` (replaced atomically), with the recipe's `kept`
    tensors, and return it. `optimizer_state`: the optimizer's state when `optimizer` holds
    only a shard of it (FSDP's whole state, gathered from every rank)."""
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        _write(partial, model, optimizer, state, kept, optimizer_state)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a full disk leaves no half checkpoint
        raise
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return directory


def _write(
    partial: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    kept: Mapping[str, torch.Tensor] | None,
    optimizer_state: Mapping[str, Any] | None = None,
) -> None:
    weights = {name: p.detach().to("cpu").contiguous() for name, p in trainable_parameters(model)}
    save_file(weights, str(partial / WEIGHTS))
    whole = optimizer.state_dict() if optimizer_state is None else dict(optimizer_state)
    torch.save(whole, partial / OPTIMIZER)
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda{index}"] = cuda_state
    save_file(rng, str(partial / RNG))
    if kept:
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in kept.items()}
        save_file(tensors, str(partial / KEPT))
    meta: dict[str, Any] = {"loop": asdict(state), "python_rng": random.getstate()}
    (partial / STATE).write_text(json.dumps(meta), encoding="utf-8")


class UnreadableCheckpoint(Exception):
    """A checkpoint's files are missing, truncated or malformed; the message says which."""


@dataclass
class _Saved:
    """Everything a checkpoint holds, read from its files and not yet applied."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]
    loop: LoopState
    python_rng: tuple[Any, ...]
    kept: dict[str, torch.Tensor]


def _read(directory: Path) -> _Saved:
    try:
        meta = json.loads((directory / STATE).read_text(encoding="utf-8"))
        version, internal, gauss = meta["python_rng"]
        return _Saved(
            weights=load_file(str(directory / WEIGHTS)),
            optimizer=torch.load(directory / OPTIMIZER, weights_only=True),
            rng=load_file(str(directory / RNG)),
            loop=LoopState(**meta["loop"]),
            python_rng=(version, tuple(internal), gauss),
            kept=load_file(str(directory / KEPT)) if (directory / KEPT).exists() else {},
        )
    except Exception as exc:  # the readers' failures are an open set: each means unreadable
        raise UnreadableCheckpoint(f"{type(exc).__name__}: {exc}") from exc


def load_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    load_optimizer: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[LoopState, dict[str, torch.Tensor]]:
    """Restore what `save_checkpoint` wrote into `model` and `optimizer` (or hand the
    optimizer's state to `load_optimizer`, for an optimizer that holds a shard of it); returns
    the counters and the recipe's kept tensors. Raises UnreadableCheckpoint, with `model` and
    `optimizer` untouched, when a file is missing or damaged."""
    saved = _read(directory)
    parameters = dict(trainable_parameters(model))
    if set(saved.weights) != set(parameters):
        raise ValueError("The checkpoint does not match this model's trainable weights.")
    with torch.no_grad():
        for name, tensor in saved.weights.items():
            parameters[name].copy_(tensor)
    if load_optimizer is not None:
        load_optimizer(saved.optimizer)
    else:
        optimizer.load_state_dict(saved.optimizer)
    torch.set_rng_state(saved.rng["torch"])
    cuda_states = [saved.rng[k] for k in sorted(k for k in saved.rng if k.startswith("cuda"))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    random.setstate(saved.python_rng)
    return saved.loop, saved.kept
