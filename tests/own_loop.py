"""Running a coroutine from a test: in a thread of its own, since the browser tests' Playwright
keeps an event loop running in the test process's main thread for the whole session (so
`asyncio.run` there fails once a browser test has run in the same process)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
