"""Load profiles: closed loop (connections, think time) or open loop (rate, arrivals, stages)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from workbench._errors import InputError, allowed, positive_float, positive_int

ARRIVALS = ("constant", "poisson")


@dataclass(frozen=True)
class Stage:
    """One k6-like ramp: over duration seconds, the rate moves linearly to target (req/s)."""

    duration: float
    target: float


@dataclass(frozen=True)
class LoadProfile:
    """What load to offer: closed loop when rate and stages are unset, otherwise open loop."""

    connections: int = 64
    duration: float = 5.0
    warmup: float = 1.0
    rate: float | None = None
    arrival: str = "constant"
    stages: tuple[Stage, ...] = ()
    think_time: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "connections", positive_int("connections", self.connections))
        object.__setattr__(self, "duration", positive_float("duration", self.duration))
        object.__setattr__(self, "warmup", positive_float("warmup", self.warmup, strict=False))
        if self.rate is not None:
            object.__setattr__(self, "rate", positive_float("rate", self.rate))
        if self.arrival not in ARRIVALS:
            raise InputError("arrival", f"must be one of {allowed(ARRIVALS)}, got {self.arrival!r}")
        object.__setattr__(self, "stages", parse_stages(self.stages))
        think = positive_float("think_time", self.think_time, strict=False)
        object.__setattr__(self, "think_time", think)
        if think and self.open_loop:
            raise InputError("think_time", "only applies to closed loop (rate=None, no stages)")
        if self.stages:
            object.__setattr__(self, "duration", sum(s.duration for s in self.stages))

    @property
    def open_loop(self) -> bool:
        """True when requests are sent on a schedule rather than when a connection is free."""
        return self.rate is not None or bool(self.stages)

    @property
    def start_rate(self) -> float:
        """The rate at the start of the measurement (stages ramp from here)."""
        return self.rate or 0.0

    @property
    def warmup_rate(self) -> float:
        """The rate offered during warm-up."""
        if self.rate:
            return self.rate
        return self.stages[0].target if self.stages else 0.0

    def rate_at(self, t: float) -> float:
        """The asked rate (req/s) t seconds after measurement start (negative t: warm-up)."""
        if t < 0:
            return self.warmup_rate
        if not self.stages:
            return self.rate or 0.0
        previous, start = self.start_rate, 0.0
        for stage in self.stages:
            if t < start + stage.duration:
                return previous + (stage.target - previous) * (t - start) / stage.duration
            previous, start = stage.target, start + stage.duration
        return previous

    def expected_requests(self) -> float:
        """Requests asked for during the measured window (the area under the rate)."""
        if not self.open_loop:
            return float("nan")
        if not self.stages:
            return (self.rate or 0.0) * self.duration
        area, previous = 0.0, self.start_rate
        for stage in self.stages:
            area += (previous + stage.target) / 2 * stage.duration
            previous = stage.target
        return area

    @property
    def asked_rate(self) -> float | None:
        """Mean asked rate over the measured window; None in closed loop."""
        return self.expected_requests() / self.duration if self.open_loop else None

    def segments(self) -> list[tuple[float, float, float, float]]:
        """The asked rate as linear pieces (t0, t1, rate at t0, rate at t1), warm-up included."""
        pieces = []
        if self.warmup > 0:
            pieces.append((-self.warmup, 0.0, self.warmup_rate, self.warmup_rate))
        if not self.stages:
            rate = self.rate or 0.0
            return [*pieces, (0.0, self.duration, rate, rate)]
        previous, start = self.start_rate, 0.0
        for stage in self.stages:
            pieces.append((start, start + stage.duration, previous, stage.target))
            previous, start = stage.target, start + stage.duration
        return pieces

    def arrivals(self, *, worker: int = 0, workers: int = 1, seed: int = 0) -> Iterator[float]:
        """Intended send times (s from measurement start, from -warmup) of one worker's share."""
        rng = random.Random(seed * 7919 + worker)
        poisson = self.arrival == "poisson"

        def gap() -> float:
            # each worker takes every workers-th unit of the cumulative asked requests
            return workers * rng.expovariate(1.0) if poisson else float(workers)

        need = gap() if poisson else float(worker)
        for t0, t1, r0, r1 in self.segments():
            slope = (r1 - r0) / (t1 - t0)
            t = t0
            while True:
                rt = r0 + slope * (t - t0)
                if (rt + r1) / 2 * (t1 - t) < need:
                    need -= (rt + r1) / 2 * (t1 - t)
                    break
                if abs(slope) < 1e-12:
                    if rt <= 0:
                        break
                    t += need / rt
                else:  # solve rt*x + slope/2*x^2 = need for the step x
                    t += (-rt + math.sqrt(max(0.0, rt * rt + 2 * slope * need))) / slope
                if t >= t1:
                    need = 0.0
                    break
                yield t
                need = gap()


def parse_stages(stages: object) -> tuple[Stage, ...]:
    """Validate stages given as Stage objects or (duration, target_rate) pairs."""
    if stages is None:
        return ()
    if not isinstance(stages, Sequence) or isinstance(stages, str | bytes):
        raise InputError("stages", "must be a list of (duration_s, target_rate) pairs")
    parsed = []
    for i, item in enumerate(stages):
        if isinstance(item, Stage):
            duration, target = item.duration, item.target
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            duration, target = item
        else:
            raise InputError("stages", f"item {i} must be a (duration_s, target_rate) pair")
        parsed.append(
            Stage(
                positive_float(f"stages[{i}].duration", duration),
                positive_float(f"stages[{i}].target", target, strict=False),
            )
        )
    if parsed and not any(s.target > 0 for s in parsed):
        raise InputError("stages", "at least one stage needs a target rate > 0")
    return tuple(parsed)


def split_evenly(total: int, parts: int) -> list[int]:
    """Split an integer into parts that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def default_processes(connections: int, cpu_count: int | None) -> int:
    """Worker processes the machine can spare: cpu_count - 1, within 1..min(8, connections)."""
    cpus = cpu_count or 1
    return max(1, min(cpus - 1, 8, connections))
