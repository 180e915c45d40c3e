"""Where a run's time goes: wall seconds per stage (synthesis, quality check, encoding, fitting, ...).

A `StageTimer` is made active for a run; code anywhere below marks its work with `timed("stage")`, which
does nothing when no timer is active. Stages may nest: time inside a nested stage counts for it only
(the quality check inside synthesis is not counted twice), so the stages add up to the timed wall time.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STAGES = ("synthesis", "quality check", "encoding", "fitting", "calibration", "test")  # in pipeline order

_ACTIVE: contextvars.ContextVar[StageTimer | None] = contextvars.ContextVar("wakeword_stage_timer", default=None)


class StageTimer:
    """Exclusive wall seconds per stage. on_stage(name) is called the first time each stage starts."""

    def __init__(self, on_stage: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_stage = on_stage
        self._stack: list[list] = []  # [stage, time its current uninterrupted stretch began]
        self._started = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:  # the enclosing stage pauses
            self._charge(now)
        if name not in self.seconds:
            self.seconds[name] = 0.0
            if self.on_stage is not None:
                self.on_stage(name)
        self._stack.append([name, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self._charge(now)
            self._stack.pop()
            if self._stack:  # the enclosing stage resumes
                self._stack[-1][1] = now

    def _charge(self, now: float) -> None:
        name, since = self._stack[-1]
        self.seconds[name] += now - since
        self._stack[-1][1] = now

    @contextmanager
    def active(self) -> Iterator[StageTimer]:
        """Make this the timer that `timed` reports to (in this thread / context)."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def report(self) -> dict[str, float]:
        """Seconds per stage in STAGES order (others after), 'other' for untimed time, and 'total'."""
        total = time.perf_counter() - self._started
        order = [s for s in STAGES if s in self.seconds] + [s for s in self.seconds if s not in STAGES]
        stages = {s: round(self.seconds[s], 1) for s in order}
        return {**stages, "other": round(max(0.0, total - sum(self.seconds.values())), 1), "total": round(total, 1)}


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Count the enclosed work as stage `name` of the active StageTimer, if there is one."""
    timer = _ACTIVE.get()
    if timer is None:
        yield
    else:
        with timer.stage(name):
            yield


def active_stages() -> dict[str, float]:
    """The active timer's report() so far, or {} when none is active."""
    timer = _ACTIVE.get()
    return {} if timer is None else timer.report()


def format_stages(stages: dict[str, float]) -> str:
    """'synthesis 58 s, quality check 12 s, ..., other 3 s (total 90 s)' from StageTimer.report()."""
    parts = [f"{name} {seconds:.0f} s" for name, seconds in stages.items() if name != "total"]
    return f"{', '.join(parts)} (total {stages.get('total', 0.0):.0f} s)"
