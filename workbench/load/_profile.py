"""Load profiles: closed loop (connections, think time) or open loop (rate, arrivals, stages)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from workbench._errors import InputError, allowed, positive_float, positive_int

ARRIVALS = ("constant", "poisson")
_IDLE_STEP_S = 0.01  # how far the schedule steps forward while the asked rate is zero


@dataclass(frozen=True)
class Stage:
    """One k6-like ramp: over duration seconds, the rate moves linearly to target (req/s)."""

    duration: float
    target: float


@dataclass(frozen=True)
class LoadProfile:
    """What load to offer: closed loop when rate and stages are unset, otherwise open loop."""

    connections: int = 64
    duration: float = 10.0
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

    def arrivals(self, *, worker: int = 0, workers: int = 1, seed: int = 0) -> Iterator[float]:
        """Intended send times (s from measurement start, from -warmup) of one worker's share."""
        rng = random.Random(seed * 7919 + worker)
        end = self.duration
        t = -self.warmup
        rate = self.rate_at(t)
        if self.arrival == "constant" and rate > 0:
            t += worker / rate  # stagger workers so their union is evenly spaced
        elif self.arrival == "poisson" and rate > 0:
            t += rng.expovariate(rate / workers)
        while t < end:
            yield t
            rate = self.rate_at(t) / workers
            while rate <= 0 and t < end:
                t += _IDLE_STEP_S
                rate = self.rate_at(t) / workers
            if rate <= 0:
                return
            t += rng.expovariate(rate) if self.arrival == "poisson" else 1.0 / rate


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
