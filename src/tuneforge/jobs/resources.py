"""What a job asks of the machine that runs it: CPUs, GPUs, memory, and a GPU type.

The Ray executor turns a job's `Resources` into the options of its actor (Ray places it on a
node that has them, or the job waits and says for what), and a training in several processes
into a placement group of one bundle per process (`bundles`: each its share); every executor
records them on the job (`Job.resources`), so the Jobs page shows what a job asked for.

* A training asks for one CPU per process it trains in (`devices` in its spec, 1 without it),
  for one GPU per process (of its `gpu_type`, if it names one) when its spec needs CUDA (fp16
  arithmetic, QLoRA, a GPU type) or when the executor has GPUs (a Ray cluster with GPU nodes,
  a machine with CUDA: training is many times faster there), and otherwise for the memory its
  estimate says its peak takes (on a CPU, where that memory is the node's RAM).
* Other jobs ask for one CPU (the diagnostic for half of one) and no GPU.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tuneforge.db.tables import Job
    from tuneforge.settings import Settings

GB = 1e9
#: CPUs a job of a kind asks for (a training: per process), when the kind is not listed: 1.
CPUS = {"diagnostic": 0.5}


class Resources(BaseModel):
    """What one job asks for."""

    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(default=1.0, ge=0, description="CPUs (logical cores).")
    gpus: float = Field(default=0.0, ge=0, description="GPUs.")
    memory_gb: float | None = Field(
        default=None, gt=0, description="Memory (RAM) in GB, when the job knows what it needs."
    )
    accelerator: str | None = Field(
        default=None,
        description="A GPU type (Ray's `accelerator_type`, such as `A100`), when one is asked for.",
    )

    def describe(self) -> str:
        """In words, for people: "1 CPU, 1 GPU, 24.0 GB memory"."""
        parts = [_count(self.cpus, "CPU")]
        if self.gpus:
            gpu = f"{self.accelerator} GPU" if self.accelerator else "GPU"
            parts.append(_count(self.gpus, gpu))
        if self.memory_gb is not None:
            parts.append(f"{self.memory_gb:.1f} GB memory")
        return ", ".join(parts)

    def ray_options(self) -> dict[str, Any]:
        """The options of a Ray actor that asks for these resources."""
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.memory_gb is not None:
            options["memory"] = int(self.memory_gb * GB)
        if self.accelerator:
            options["accelerator_type"] = self.accelerator
        return options

    def share(self, processes: int) -> Resources:
        """What each of `processes` processes that share these resources asks for."""
        memory = None if self.memory_gb is None else self.memory_gb / processes
        return self.model_copy(
            update={
                "cpus": self.cpus / processes,
                "gpus": self.gpus / processes,
                "memory_gb": memory,
            }
        )

    def bundle(self) -> dict[str, float]:
        """These resources as one bundle of a Ray placement group."""
        bundle = {"CPU": self.cpus}
        if self.gpus:
            bundle["GPU"] = self.gpus
        if self.memory_gb is not None:
            bundle["memory"] = float(int(self.memory_gb * GB))
        if self.accelerator:  # what `accelerator_type` asks of an actor
            bundle[f"accelerator_type:{self.accelerator}"] = 0.001
        return bundle


def _count(value: float, noun: str) -> str:
    shown = f"{value:g}"
    return f"{shown} {noun}{'' if value == 1 else 's'}"


def job_processes(job: Job) -> int:
    """How many processes `job` runs in: a training its `processes_of`, any other job one."""
    return processes_of(job.spec) if job.kind == "train" else 1


def processes_of(spec: dict[str, Any]) -> int:
    """How many processes a training spec trains in (`devices`; "auto" counts as one here:
    the node's hardware decides, and Ray is asked for one)."""
    devices = spec.get("devices", 1)
    return devices if isinstance(devices, int) and devices >= 1 else 1


def needs_cuda(spec: dict[str, Any]) -> bool:
    """Whether a training spec can only run on a CUDA GPU."""
    return spec.get("precision") == "fp16" or spec.get("method") == "qlora"


def job_resources(
    session: Session, settings: Settings, job: Job, *, has_gpus: bool = False
) -> Resources:
    """What `job` asks for of an executor whose nodes have GPUs or not (see the module
    docstring)."""
    cpus = CPUS.get(job.kind, 1.0)
    if job.kind != "train":
        return Resources(cpus=cpus)
    processes = processes_of(job.spec)
    gpu_type = job.spec.get("gpu_type")
    gpus = float(processes) if has_gpus or gpu_type or needs_cuda(job.spec) else 0.0
    memory = None if gpus else _training_memory_gb(session, settings, job)
    accelerator = gpu_type if gpus else None
    return Resources(cpus=cpus * processes, gpus=gpus, memory_gb=memory, accelerator=accelerator)


def _training_memory_gb(session: Session, settings: Settings, job: Job) -> float | None:
    """The estimate's peak memory of the training `job` (all its processes), in GB rounded up
    to a tenth; None when it cannot be estimated any more (its dataset is gone, say)."""
    from tuneforge.db.tables import User
    from tuneforge.errors import DomainError
    from tuneforge.jobs.kind import kind_of
    from tuneforge.jobs.kinds.train import estimate_run

    user = session.get(User, job.owner_id)
    if user is None:
        return None
    try:
        spec = kind_of("train").validate(job.spec)
        peak = estimate_run(session, user, settings, spec).peak_memory_bytes
    except (DomainError, ValueError):
        return None
    return math.ceil(peak * processes_of(job.spec) / GB * 10) / 10
