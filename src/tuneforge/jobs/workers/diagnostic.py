"""The `diagnostic` job: runs for a while, reports every second, and can be told to fail.

It exercises the whole pipeline an operator cares about: a worker process starts, reports
progress, metrics and logs, writes an artifact to the store, and settles its job.
"""

from __future__ import annotations

import json
import os
import time

from tuneforge.jobs.context import JobContext
from tuneforge.jobs.kinds.diagnostic import DiagnosticResult, DiagnosticSpec


def run(spec: DiagnosticSpec, ctx: JobContext) -> DiagnosticResult:
    fail_at = spec.fail_after
    ctx.log(f"diagnostic job started in process {os.getpid()} for {spec.seconds:g} s")
    start = time.monotonic()
    ticks = 0
    while (elapsed := time.monotonic() - start) < spec.seconds:
        if not spec.ignore_cancel:
            ctx.check_cancelled()
        if fail_at is not None and elapsed >= fail_at:
            raise RuntimeError(f"diagnostic failure after {elapsed:.1f} s, as requested")
        time.sleep(min(1.0, spec.seconds - elapsed))
        ticks += 1
        done = min((time.monotonic() - start) / spec.seconds, 1.0)
        ctx.progress(done, f"tick {ticks}")
        ctx.metric("elapsed_seconds", time.monotonic() - start, step=ticks)
    if spec.fail or (fail_at is not None):
        raise RuntimeError("diagnostic failure at the end, as requested")
    report = DiagnosticResult(ticks=ticks, seconds=round(time.monotonic() - start, 3))
    ctx.artifact("report.json", json.dumps({**report.model_dump(), "pid": os.getpid()}).encode())
    ctx.log("diagnostic job finished")
    return report
