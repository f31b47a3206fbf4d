"""A full disk, told as a sentence: the one place that recognises "no space left on device".

A write that runs out of space surfaces in many shapes: an `OSError` with errno ENOSPC (or
EDQUOT, a quota), or a library's own error wrapping one (safetensors, PyTorch and Arrow put the
operating system's words in their message). `disk_full` finds it in an exception's chain and
returns a `DiskFull` that says how much room is left where TuneForge keeps its data, and what
to do about it.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuneforge.errors import DiskFull

_CODES = frozenset({errno.ENOSPC, errno.EDQUOT})
_WORDS = ("no space left on device", "disk quota exceeded", "os error 28")
MB = 1_000_000


def _runs_out_of_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _CODES:
        return True
    text = str(exc).lower()
    return any(words in text for words in _WORDS)


def disk_full(exc: BaseException, where: Path) -> DiskFull | None:
    """`exc` as a DiskFull naming the free space at `where`, or None when it is another
    failure. Causes and contexts are searched too (a library may wrap the OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DiskFull):
            return current
        if _runs_out_of_space(current):
            return DiskFull(_sentence(where))
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def reporting_disk_full(where: Path) -> Iterator[None]:
    """Raise a DiskFull instead of any failure of its block that is the disk filling up."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        full = disk_full(exc, where)
        if full is None:
            raise
        raise full from exc


def _sentence(where: Path) -> str:
    try:
        usage = shutil.disk_usage(where)
    except OSError:
        return (
            f"The disk is full where TuneForge keeps its data ({where}). Free some space and "
            "try again."
        )
    return (
        f"The disk is full: {usage.free / MB:.1f} MB free of {usage.total / MB:.1f} MB where "
        f"TuneForge keeps its data ({where}). Free some space (delete datasets, models or "
        "exports you no longer need, or ask an administrator for more) and try again."
    )
