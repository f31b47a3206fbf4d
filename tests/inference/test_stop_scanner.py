"""Stop strings are cut the same way for every engine, wherever the pieces break."""

from __future__ import annotations

import pytest

from tuneforge.inference.engine import StopScanner


def run(pieces: list[str], stops: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    shown = [scanner.feed(p) for p in pieces] + [scanner.flush()]
    return [s for s in shown if s], scanner.stopped


def test_text_without_stops_passes_through_unchanged() -> None:
    assert run(["Hel", "lo ", "world"], []) == (["Hel", "lo ", "world"], False)


@pytest.mark.parametrize(
    "pieces",
    [
        ["Answer: 42", "\n\nQ: next"],
        ["Answer: 42\n", "\nQ: next"],
        ["Ans", "wer: 4", "2\n", "\n", "Q"],
    ],
)
def test_a_stop_string_split_over_pieces_is_cut_with_what_follows(pieces: list[str]) -> None:
    shown, stopped = run(pieces, ["\n\n"])
    assert "".join(shown) == "Answer: 42" and stopped


def test_held_back_text_that_was_not_a_stop_is_shown() -> None:
    shown, stopped = run(["a END", "ING b"], ["ENDX"])
    assert "".join(shown) == "a ENDING b" and not stopped
    # Only the possible beginning of a stop is held back, not the text before it.
    scanner = StopScanner(["STOP"])
    assert scanner.feed("one ST") == "one "


def test_the_earliest_of_several_stops_wins() -> None:
    assert run(["x;y.z"], [".", ";"]) == (["x"], True)
