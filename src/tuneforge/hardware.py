"""What this machine can train on: CPU, RAM and CUDA GPUs, found without torch.

The web process uses this to estimate memory and speed before a job exists, so it reads
`/proc/cpuinfo`, psutil and `nvidia-smi` (when that binary is on the PATH) and never imports
torch. `detect_hardware()` caches its answer for a minute: free memory changes, the rest does not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
#: CPU flags of a bf16 matrix unit (x86: AMX; Arm: the BF16 extension's matrix multiply). AVX-512
#: BF16 alone is not enough: its bf16 matrix products run at about 0.6x fp32 ones (65 vs 102
#: GFLOP/s measured with PyTorch's CPU matmul), so fp32 trains faster there.
BF16_FLAGS = frozenset({"amx_bf16", "bf16"})
NVIDIA_SMI_TIMEOUT = 5.0
CACHE_SECONDS = 60.0
MIB = 2**20


class GPU(BaseModel):
    """One CUDA GPU, as `nvidia-smi` reports it."""

    name: str = Field(description="The GPU's product name, e.g. `NVIDIA A100-SXM4-40GB`.")
    memory_total_bytes: int = Field(ge=0, description="Device memory in bytes.")
    memory_free_bytes: int = Field(ge=0, description="Device memory not in use right now.")
    compute_capability: str | None = Field(
        default=None, description="CUDA compute capability such as `8.0` (unknown on old drivers)."
    )
    bf16: bool = Field(description="Runs bf16 natively (compute capability 8.0 or newer).")


class Hardware(BaseModel):
    """The machine a training job would run on."""

    cpu_model: str = Field(description="The CPU's model name.")
    cores: int = Field(ge=1, description="CPU cores this process may use.")
    memory_total_bytes: int = Field(ge=0, description="Installed RAM in bytes.")
    memory_available_bytes: int = Field(
        ge=0, description="RAM available to a new process right now, in bytes."
    )
    cpu_bf16: bool = Field(
        description="The CPU has a bf16 matrix unit (AMX on x86, BF16 on Arm), so training in "
        "bf16 is faster than in fp32 on it."
    )
    gpus: list[GPU] = Field(default_factory=list, description="CUDA GPUs, in device order.")

    @property
    def has_cuda(self) -> bool:
        return bool(self.gpus)

    @property
    def fingerprint(self) -> str:
        """A short stable id of the machine's compute (CPU model, cores, GPU names) for caching
        measurements; it ignores memory, which changes from minute to minute."""
        parts = [self.cpu_model, str(self.cores), *(gpu.name for gpu in self.gpus)]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _cpuinfo() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"model name", "Model", "Hardware"} and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (`/proc/cpuinfo`; empty where it cannot be read)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


def _cpu_bf16(cpuinfo: str) -> bool:
    return not BF16_FLAGS.isdisjoint(cpu_flags(cpuinfo))


def usable_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _run_nvidia_smi(binary: str, fields: str) -> str | None:
    try:
        result = subprocess.run(
            [binary, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("nvidia-smi failed: %s", exc)
        return None
    return result.stdout if result.returncode == 0 else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]" and friends
        return None


def parse_nvidia_smi(output: str, with_capability: bool = True) -> list[GPU]:
    """GPUs from `nvidia-smi --query-gpu=name,memory.total,memory.free[,compute_cap]` output
    in CSV without header or units (memory in MiB)."""
    gpus = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) < 3 or not cells[0]:
            continue
        total, free = _number(cells[1]), _number(cells[2])
        capability = cells[3] if with_capability and len(cells) > 3 else None
        major = _number(capability) if capability else None
        gpus.append(
            GPU(
                name=cells[0],
                memory_total_bytes=int((total or 0) * MIB),
                memory_free_bytes=int((free if free is not None else total or 0) * MIB),
                compute_capability=capability if major is not None else None,
                bf16=major is not None and major >= 8.0,
            )
        )
    return gpus


def _gpus() -> list[GPU]:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    output = _run_nvidia_smi(binary, "name,memory.total,memory.free,compute_cap")
    if output is not None:
        return parse_nvidia_smi(output)
    # Drivers older than 510 do not know `compute_cap`.
    output = _run_nvidia_smi(binary, "name,memory.total,memory.free")
    return parse_nvidia_smi(output, with_capability=False) if output else []


def probe_hardware() -> Hardware:
    """Look at the machine now (no cache)."""
    cpuinfo = _cpuinfo()
    memory = psutil.virtual_memory()
    return Hardware(
        cpu_model=_cpu_model(cpuinfo),
        cores=usable_cores(),
        memory_total_bytes=memory.total,
        memory_available_bytes=memory.available,
        cpu_bf16=_cpu_bf16(cpuinfo),
        gpus=_gpus(),
    )


_lock = threading.Lock()
_cached: tuple[float, Hardware] | None = None


def detect_hardware(max_age: float = CACHE_SECONDS) -> Hardware:
    """This machine's hardware, looked at again when the last look is older than `max_age`
    seconds."""
    global _cached
    with _lock:
        now = time.monotonic()
        if _cached is None or now - _cached[0] > max_age:
            _cached = (now, probe_hardware())
        return _cached[1]


def clear_hardware_cache() -> None:
    global _cached
    with _lock:
        _cached = None
