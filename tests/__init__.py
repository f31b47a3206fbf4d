"""TuneForge's tests.

`make test` runs them in one process per core (pytest-xdist). Each process, and the job workers
it starts, then computes on its own share of the cores, so that two training runs don't fight
over the same ones (PyTorch and OpenMP read `OMP_NUM_THREADS` when they start)."""

import os

_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
if _WORKERS:
    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // int(_WORKERS)))
    )
