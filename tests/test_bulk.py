"""The collector pause around bulk work: off while any pause runs, back as it was after."""

import gc
import threading
from collections.abc import Iterator

import pytest

from tuneforge.bulk import gc_paused


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    gc.enable() if was else gc.disable()


def test_the_collector_is_off_inside_and_on_again_after_the_last_pause_ends() -> None:
    gc.enable()
    inner_started, outer_may_end = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with gc_paused():
            inner_started.set()
            outer_may_end.wait(5)
            seen.append(gc.isenabled())

    with gc_paused():
        thread = threading.Thread(target=other)
        thread.start()
        assert inner_started.wait(5)
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's pause still runs
    outer_may_end.set()
    thread.join(5)
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off_and_errors_pass_through() -> None:
    gc.disable()

    @gc_paused()
    def failing() -> None:
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        failing()
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(ValueError, match="bad record"):
        failing()
    assert gc.isenabled()
