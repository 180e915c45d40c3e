"""Stage timing (wakeword.timing): exclusive seconds per stage, nested stages not counted twice."""

from __future__ import annotations

import pytest

import wakeword.timing as timing
from wakeword.timing import StageTimer, active_stages, format_stages, timed


class Clock:
    """A fake time.perf_counter that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nested_stages_count_once_and_add_up_to_the_total(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    with timed("synthesis"):  # no active timer: nothing is recorded anywhere
        clock.now += 1
    assert active_stages() == {}
    started = []
    timer = StageTimer(on_stage=started.append)
    with timer.active():
        clock.now += 0.5  # untimed: "other"
        with timed("synthesis"):
            clock.now += 2
            for _ in range(3):
                with timed("quality check"):
                    clock.now += 1
                clock.now += 1
        with timed("fitting"):
            clock.now += 4
        assert active_stages()["total"] == pytest.approx(12.5)
    assert timer.seconds == pytest.approx({"synthesis": 5.0, "quality check": 3.0, "fitting": 4.0})
    assert started == ["synthesis", "quality check", "fitting"]  # each announced once, when it first starts
    report = timer.report()
    assert report == {"synthesis": 5.0, "quality check": 3.0, "fitting": 4.0, "other": 0.5, "total": 12.5}
    assert format_stages(report) == "synthesis 5 s, quality check 3 s, fitting 4 s, other 0 s (total 12 s)"


def test_a_stage_that_raises_is_still_charged(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timing.time, "perf_counter", clock)
    timer = StageTimer()
    with timer.active(), pytest.raises(RuntimeError), timed("encoding"):
        clock.now += 3
        raise RuntimeError("stop")
    assert timer.seconds == {"encoding": 3.0}
    assert active_stages() == {}  # the timer is no longer active after its block
