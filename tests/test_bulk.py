"""The collector pause around bulk work: off while any pause runs, back as it was after."""

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from tuneforge.bulk import gc_paused


class Node:
    """Something a weak reference can point to, held in a reference cycle."""

    def __init__(self, cycle: list[object]) -> None:
        self.cycle = cycle
        cycle.append(self)


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


def test_what_the_pause_made_goes_to_the_oldest_generation_and_its_cycles_are_still_freed() -> None:
    gc.enable()
    gc.collect()
    with gc_paused():
        made = [[number] for number in range(10_000)]
        cycle: list[object] = []
        freed = weakref.ref(Node(cycle))
    oldest = {id(item) for item in gc.get_objects(generation=2)}
    assert id(made) in oldest and id(made[-1]) in oldest
    del made, cycle
    gc.collect()
    assert freed() is None


def test_objects_frozen_before_stay_frozen() -> None:
    gc.enable()
    before = [[number] for number in range(1_000)]
    gc.freeze()
    try:
        with gc_paused():
            made = [[number] for number in range(1_000)]
        # The frozen stay out of every generation the collector walks (counting them would
        # not do: anything frozen that another thread lets go of leaves the count).
        walked = {id(item) for item in gc.get_objects()}
        assert id(before) not in walked and id(before[-1]) not in walked
        assert id(made) in walked and id(made[-1]) in walked
    finally:
        gc.unfreeze()
