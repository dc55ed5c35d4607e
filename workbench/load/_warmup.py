"""The steady warm-up: workers report short windows during the warm-up, the parent judges them and
names the moment the measured window starts (the warm-up's seconds are the cap)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Iterator

from workbench.load._state import DriverState
from workbench.load._timer import Waker

# A steady warm-up (spec.steady_warmup) ends once the last STEADY_WINDOWS windows of
# WARM_WINDOW_S agree: each with STEADY_MIN_RESPONSES responses or more, their mean latencies and
# response counts within STEADY_SPREAD of each other. The warm-up's seconds are the cap.
WARM_WINDOW_S = 0.1
STEADY_WINDOWS = 3
STEADY_MIN_RESPONSES = 20
STEADY_SPREAD = 0.35
# The measured window starts this long after the parent's decision: every worker hears it first.
MEASURE_MARGIN_S = 0.05


class WarmupWindows(DriverState):
    """A driver's side of a steady warm-up: its windows to the parent, the parent's answer applied."""

    # more of the driver's state these methods read and move (set by the driver)
    pacing: bool
    waker: Waker | None
    arrivals: Iterator[float]
    next_at: float
    stop_at: float
    hard_end: float
    start_at: float
    warm_window: int
    warm_count: int
    warm_sum: float
    warm_handle: asyncio.TimerHandle | None

    _tick: Callable[[], None]  # the driver's next per-second tick
    _next_arrival: Callable[[], float]

    def _warm_tick(self) -> None:
        """Send the parent the warm-up window that just ended: (window, responses, summed latency)."""
        if self.done or time.monotonic() >= self.m_start:
            return
        window = (self.warm_window, self.warm_count, self.warm_sum)
        self.pipe.send(("warm", self.spec.index, window))
        self.warm_window += 1
        self.warm_count, self.warm_sum = 0, 0.0
        at = self.start_at + (self.warm_window + 1) * WARM_WINDOW_S
        self.warm_handle = self.loop.call_later(max(0.0, at - time.monotonic()), self._warm_tick)

    def _on_parent(self) -> None:
        """A message from the parent during the run: ("measure", at) ends the warm-up at `at`."""
        try:
            while self.pipe.poll():
                message = self.pipe.recv()
                if message[0] == "measure":
                    self._measure_from(float(message[1]))
        except (EOFError, OSError):  # the parent went away: _sweep ends the run
            self.loop.remove_reader(self.pipe.fileno())

    def _measure_from(self, at: float) -> None:
        """Start the measured window at `at` (or now, if that passed) instead of after the cap."""
        now = time.monotonic()
        if self.done or now >= self.m_start or at >= self.m_start:
            return
        at = max(at, now)
        p = self.profile
        self.m_start = at
        self.stop_at = at + p.duration
        self.hard_end = self.stop_at + self.spec.drain
        self.tick_handle.cancel()
        self.tick_handle = self.loop.call_later(max(0.0, at + 1 - now), self._tick)
        if self.open_loop:  # the measured arrivals from the new start; warm-up ones end there
            spec = self.spec
            measured = dataclasses.replace(p, warmup=0.0)
            self.arrivals = measured.arrivals(
                worker=spec.index, workers=spec.workers, seed=spec.seed
            )
            self.next_at = self._next_arrival()
            if self.pacing and self.waker is not None:
                self.waker.at(self.next_at)


class SteadyWarmup:
    """The parent's judge of a steady warm-up: merges the workers' windows, says when to measure."""

    def __init__(self, *, workers: int, start_at: float, cap: float) -> None:
        self.workers = workers
        self.cap_at = start_at + cap
        self.parts: dict[int, list[tuple[int, float]]] = {}
        self.windows: list[tuple[int, float]] = []  # merged, in order: (responses, mean latency)

    def add(self, window: tuple[int, int, float]) -> float | None:
        """Take one worker's window; once steady, the time (monotonic) to start measuring at."""
        index, count, total = window
        self.parts.setdefault(index, []).append((count, total))
        while len(self.parts.get(len(self.windows), ())) == self.workers:
            merged = self.parts.pop(len(self.windows))
            responses = sum(c for c, _ in merged)
            mean = sum(t for _, t in merged) / responses if responses else math.inf
            self.windows.append((responses, mean))
        last = self.windows[-STEADY_WINDOWS:]
        if len(last) < STEADY_WINDOWS or min(n for n, _ in last) < STEADY_MIN_RESPONSES:
            return None
        counts, means = [n for n, _ in last], [m for _, m in last]
        if max(means) > (1 + STEADY_SPREAD) * min(means):
            return None
        if max(counts) > (1 + STEADY_SPREAD) * min(counts):
            return None
        at = time.monotonic() + MEASURE_MARGIN_S
        return at if at < self.cap_at else None
