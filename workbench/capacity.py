"""Capacity search: the highest offered rate that holds an SLO — open-loop steps, then bisection."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from service.settings import ServiceSettings
from workbench._errors import InputError, StackError, positive_float, positive_int
from workbench.compare import interval, resample
from workbench.experiment import Experiment, Session, study_load
from workbench.launcher import ServiceProcess
from workbench.load import SLO, Load
from workbench.load._load import STUDY_CONNECTIONS
from workbench.run import RunResult
from workbench.stack import Stack
from workbench.store import Store, new_run_id

# An offered rate the service answers less than this share of is not held, whatever the latency.
MIN_DELIVERED = 0.9
# Bisect until the bracket [held, broke) is this narrow relative to the rate that held...
TOLERANCE = 0.05
# ...or this many bisections were made (from a factor-2 bracket, 5 reach 5%).
MAX_BISECTIONS = 8
# A step broken only by the generator falling behind is measured again this many times.
GENERATOR_RETRIES = 1
# When the first rate breaks, step down this many times before giving up.
STEPS_DOWN = 4
# A search's load unless told otherwise (open loop: connections are a cap, the rate is the step's).
CAPACITY_LOAD = Load(path="/users/{id}", connections=STUDY_CONNECTIONS, duration=3.0)


def breaks(run: RunResult, slo: SLO) -> list[str]:
    """What a run breaks: the SLO, the generator's self-check, or the delivered rate."""
    broken = _service_breaks(run, slo)
    row = run.summary()
    if row.get("generator_saturated"):
        broken.append(f"generator saturated: {row.get('saturation_reason')}")
    return broken


def _service_breaks(run: RunResult, slo: SLO) -> list[str]:
    """What the service broke: the SLO or the delivered rate (not the generator's self-check)."""
    row = run.summary()
    measured = {
        k: row.get(f"{k}_ms", float("nan")) for k in ("p50", "p90", "p95", "p99", "p999", "max")
    }
    broken = slo.check_values(
        measured, requests=int(row.get("requests", 0)), errors=int(row.get("errors", 0))
    )
    asked = row.get("asked_rate") or 0
    if asked and row.get("throughput_rps", 0) < MIN_DELIVERED * asked:
        broken.append(f"served {row['throughput_rps']:,.0f} of {asked:,.0f} req/s asked")
    return broken


def generator_only(run: RunResult, slo: SLO) -> bool:
    """Whether a run broke only because the generator fell behind (the service held the SLO)."""
    return bool(run.summary().get("generator_saturated")) and not _service_breaks(run, slo)


def holds(frame: pd.DataFrame, slo: SLO | str) -> pd.Series:
    """For each summary row (a run), whether it held the SLO."""
    slo = SLO.parse(slo) if isinstance(slo, str) else slo
    ok = []
    for row in frame.to_dict("records"):
        measured = {
            k: row.get(f"{k}_ms", float("nan")) for k in ("p50", "p90", "p95", "p99", "p999", "max")
        }
        broken = slo.check_values(
            measured, requests=int(row.get("requests") or 0), errors=int(row.get("errors") or 0)
        )
        ok.append(not broken)
    return pd.Series(ok, index=frame.index, name="holds_slo")


@dataclass(frozen=True, eq=False)
class Capacity:
    """The result of a capacity search: the rate that held, where it broke, and why."""

    max_rate: float | None
    broke_at: float | None
    broken: tuple[str, ...]
    bottleneck: dict[str, str]
    points: pd.DataFrame = field(repr=False)
    # The run at max_rate (what the service did at its capacity) and the one at broke_at.
    held: RunResult | None = field(default=None, repr=False)
    broke: RunResult | None = field(default=None, repr=False)

    def interval(self) -> tuple[float, float | None]:
        """The bracket [held, broke): capacity lies within it (high None: never broke)."""
        return (self.max_rate or 0.0, self.broke_at)

    def sentence(self) -> str:
        """The finding in one sentence."""
        if self.max_rate is None:
            return f"Even the first step broke the SLO ({'; '.join(self.broken)}). {self.bottleneck.get('sentence', '')}"
        where = (
            f"; at {self.broke_at:,.0f} req/s: {'; '.join(self.broken)}" if self.broke_at else ""
        )
        return f"Holds the SLO up to {self.max_rate:,.0f} req/s{where}. {self.bottleneck.get('sentence', '')}"


def narrow(good: float, bad: float, tolerance: float) -> bool:
    """Whether the bracket [good, bad) is within tolerance: (bad - good) / good <= tolerance."""
    return (bad - good) / good <= tolerance


def bracket(
    holds_at: Callable[[float], bool],
    *,
    start: float,
    limit: float,
    factor: float = 2.0,
    tolerance: float = TOLERANCE,
    max_bisections: int = MAX_BISECTIONS,
) -> tuple[float | None, float | None]:
    """The last rate that held and the first that broke.

    Steps up by `factor` from `start` until a rate breaks (or `limit`); when `start` itself
    breaks, steps down; then bisects until the bracket is within `tolerance` or
    `max_bisections` were made.
    """
    good: float | None = None
    bad: float | None = None
    rate = start
    while rate <= limit:
        if holds_at(rate):
            good = rate
            rate *= factor
        else:
            bad = rate
            break
    rate = start / factor
    while good is None and bad is not None and rate >= start / factor**STEPS_DOWN:
        if holds_at(rate):
            good = rate
        else:
            bad = rate
            rate /= factor
    if good is not None and bad is not None:
        for _ in range(max_bisections):
            if narrow(good, bad, tolerance):
                break
            middle = (good + bad) / 2
            if holds_at(middle):
                good = middle
            else:
                bad = middle
    return good, bad


def search(
    stack: Stack,
    *,
    settings: ServiceSettings,
    slo: SLO | str = "p95=50ms,errors=1%",
    start: float = 250.0,
    limit: float = 50_000.0,
    factor: float = 2.0,
    tolerance: float = TOLERANCE,
    max_bisections: int = MAX_BISECTIONS,
    labels: dict[str, Any] | None = None,
    store: Store | None = None,
    session: Session | None = None,
    service: ServiceProcess | None = None,
    progress: bool = True,
    load: Load | None = None,
    experiment: Experiment | None = None,
    **shape: Any,
) -> Capacity:
    """Step the offered rate up by `factor` until the SLO breaks, then bisect to within `tolerance`.

    The load of every step is `experiment`'s, else `load` (default CAPACITY_LOAD), with Load's
    fields given by keyword (path, connections, duration, warmup, ids...) over it, at the step's
    rate.

    Every step runs on one service (`service`, or one started here) and one Session (`session`,
    or one opened here): the load's worker processes are started once for the whole search.
    """
    point = study_load(experiment, load, CAPACITY_LOAD, shape)
    slo = SLO.parse(slo) if isinstance(slo, str) else slo
    start = positive_float("start", start)
    limit = positive_float("limit", limit)
    if factor <= 1:
        raise InputError("factor", f"must be > 1, got {factor!r}")
    tolerance = positive_float("tolerance", tolerance)
    max_bisections = positive_int("max_bisections", max_bisections, minimum=0)
    search_id = new_run_id("capacity")
    rows: list[dict[str, Any]] = []
    verdicts: dict[float, tuple[list[str], RunResult]] = {}

    def measure(rate: float, svc: ServiceProcess, shared: Session) -> bool:
        # Fresh ids each step (a random seed): replaying the last step's ids would find them cached.
        experiment = replace(
            point, settings=settings, load=point.load.replace(rate=rate), name="capacity",
            labels={**(labels or {}), "capacity": search_id},
        )  # fmt: skip
        for attempt in range(1 + GENERATOR_RETRIES):
            run = experiment.run(stack, store=store, progress=False, service=svc, session=shared)
            # an overloaded step leaves queued requests: the next step starts on an idle service
            if not svc.wait_idle():
                raise StackError(
                    f"the service still had requests in flight after the step at {rate:,.0f} "
                    f"req/s; log {svc.log}"
                )
            # The generator falling behind while the service held (a neighbour took its CPU for
            # a moment) says nothing about the service: that step is measured again.
            if not generator_only(run, slo) or attempt == GENERATOR_RETRIES:
                break
            if progress:
                print(
                    f"capacity {rate:>9,.0f} req/s: only the generator fell behind "
                    f"({run.summary().get('saturation_reason')}); measuring again",
                    flush=True,
                )
        broken = breaks(run, slo)
        verdicts[rate] = (broken, run)
        row = run.summary()
        rows.append(
            {
                "rate": rate,
                "throughput_rps": row.get("throughput_rps"),
                "p50_ms": row.get("p50_ms"),
                "p95_ms": row.get("p95_ms"),
                "p99_ms": row.get("p99_ms"),
                "error_rate": row.get("error_rate"),
                "ok": not broken,
                "bottleneck": row.get("bottleneck"),
                "run_id": run.run_id,
            }
        )
        if progress:
            state = "holds" if not broken else "BREAKS: " + "; ".join(broken)
            print(
                f"capacity {rate:>9,.0f} req/s asked → {row.get('throughput_rps', 0):>9,.0f} served, "
                f"P95 {row.get('p95_ms', float('nan')):7.1f} ms — {state}",
                flush=True,
            )
        return not broken

    with contextlib.ExitStack() as owned:
        shared = session if session is not None else owned.enter_context(Session())
        svc = (
            service if service is not None else owned.enter_context(ServiceProcess(settings, stack))
        )
        good, bad = bracket(
            lambda rate: measure(rate, svc, shared), start=start, limit=limit, factor=factor,
            tolerance=tolerance, max_bisections=max_bisections,
        )  # fmt: skip
    broken: list[str] = verdicts[bad][0] if bad is not None else []
    bottleneck = verdicts[bad][1].manifest["bottleneck"] if bad is not None else {}
    points = pd.DataFrame(rows).sort_values("rate").reset_index(drop=True)
    return Capacity(
        max_rate=good, broke_at=bad, broken=tuple(broken), bottleneck=bottleneck, points=points,
        held=verdicts[good][1] if good is not None else None,
        broke=verdicts[bad][1] if bad is not None else None,
    )  # fmt: skip


def estimate(
    found: Sequence[Capacity], *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float | None]:
    """Capacity and its interval from searches: one search gives its bracket [held, broke);
    several give the median of their rates held and a bootstrap interval of that median."""
    if not found:
        raise InputError("found", "needs at least one capacity search")
    if len(found) == 1:
        low, high = found[0].interval()
        return low, low, high
    rates = np.array([f.max_rate or 0.0 for f in found], dtype=float)
    rng = np.random.default_rng(seed)
    draws = resample(len(rates), n_boot=n_boot, rng=rng)
    low, high = interval(np.median(rates[draws], axis=1), confidence=confidence)
    return float(np.median(rates)), low, high
