"""How long a running job has left, as a plain poll guesses it (``app.http.waiting.seconds_left``)."""

from __future__ import annotations

import pytest

from app.http.waiting import seconds_left
from app.workers.events import Event


def _progress(*steps: tuple[int, int]) -> list[Event]:
    events = [Event(0, "status", {"status": "running"})]
    events += [
        Event(number, "progress", {"step": step, "total": total}) for number, (step, total) in enumerate(steps, 1)
    ]
    return events


def test_the_steps_left_at_the_pace_so_far_and_one_more_for_the_picture() -> None:
    # Four of eight steps in one second: four more steps and the picture, a quarter second each.
    assert seconds_left(_progress((3, 8), (4, 8)), running_for=1.0) == pytest.approx(1.25)


def test_after_the_last_step_only_the_picture_is_left() -> None:
    assert seconds_left(_progress((8, 8)), running_for=0.8) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("events", "running_for"),
    [
        (_progress(), 1.0),  # no step reported yet
        (_progress((0, 8)), 1.0),
        (_progress((9, 8)), 1.0),  # a step past the total says nothing useful
        (_progress((4, 8)), 0.0),  # a clock that says it has not started
        (_progress((4, 8)), -2.0),
    ],
)
def test_unknown_when_the_events_cannot_tell(events: list[Event], running_for: float) -> None:
    assert seconds_left(events, running_for=running_for) is None
