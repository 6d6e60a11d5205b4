"""Timing a thing with and without one feature, alternated, so drift in a shared machine's load falls on both.

Used by the benches that compare a call with a feature against the same call without it
(attention maps, regions, ControlNet guides).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternated(paint: Callable[[int, bool], float], rounds: int) -> dict[bool, list[float]]:
    """Seconds of ``paint(seed, with_feature)`` per round for each side, after one warm-up call of each.

    Which side goes first alternates by round.
    """
    paint(0, True)
    paint(0, False)
    timings: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        for side in (True, False) if round_ % 2 == 0 else (False, True):
            timings[side].append(paint(round_, side))
    return timings


def report(timings: dict[bool, list[float]], *, without: str, with_: str, ratio: str, setting: str) -> None:
    """Prints each side's median and minimum and their ratios, labelled."""
    plain, featured = statistics.median(timings[False]), statistics.median(timings[True])
    rounds = len(timings[False])
    width = max(len(without), len(with_)) + 1
    print(f"{without + ':':<{width}} {plain:.3f} s per call (median of {rounds}, min {min(timings[False]):.3f})")
    print(f"{with_ + ':':<{width}} {featured:.3f} s per call (median of {rounds}, min {min(timings[True]):.3f})")
    print(
        f"{ratio}: {featured / plain:.3f} (medians), {min(timings[True]) / min(timings[False]):.3f} (minimums); "
        f"{setting}"
    )
