"""Capacity search: the highest offered rate that holds an SLO — open-loop steps, then bisection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from service.settings import ServiceSettings
from workbench._errors import InputError, StackError, positive_float, positive_int
from workbench.experiment import Experiment
from workbench.launcher import ServiceProcess
from workbench.load import SLO
from workbench.run import RunResult
from workbench.stack import Stack
from workbench.store import Store, new_run_id

# An offered rate the service answers less than this share of is not held, whatever the latency.
MIN_DELIVERED = 0.9


def breaks(run: RunResult, slo: SLO) -> list[str]:
    """What a run breaks: the SLO, the generator's self-check, or the delivered rate."""
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
    if row.get("generator_saturated"):
        broken.append(f"generator saturated: {row.get('saturation_reason')}")
    return broken


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

    def sentence(self) -> str:
        """The finding in one sentence."""
        if self.max_rate is None:
            return f"Even the first step broke the SLO ({'; '.join(self.broken)}). {self.bottleneck.get('sentence', '')}"
        where = (
            f"; at {self.broke_at:,.0f} req/s: {'; '.join(self.broken)}" if self.broke_at else ""
        )
        return f"Holds the SLO up to {self.max_rate:,.0f} req/s{where}. {self.bottleneck.get('sentence', '')}"


def search(
    stack: Stack,
    *,
    settings: ServiceSettings,
    slo: SLO | str = "p95=50ms,errors=1%",
    path: str = "/users/{id}",
    start: float = 250.0,
    limit: float = 50_000.0,
    factor: float = 2.0,
    bisections: int = 3,
    duration: float = 3.0,
    warmup: float = 1.0,
    connections: int = 256,
    ids: str = "uniform",
    zipf_s: float = 1.1,
    store: Store | None = None,
    progress: bool = True,
) -> Capacity:
    """Step the offered rate up by `factor` until the SLO breaks, then bisect `bisections` times."""
    slo = SLO.parse(slo) if isinstance(slo, str) else slo
    start = positive_float("start", start)
    limit = positive_float("limit", limit)
    if factor <= 1:
        raise InputError("factor", f"must be > 1, got {factor!r}")
    bisections = positive_int("bisections", bisections, minimum=0)
    search_id = new_run_id("capacity")
    rows: list[dict[str, Any]] = []
    verdicts: dict[float, tuple[list[str], RunResult]] = {}

    def measure(rate: float, svc: ServiceProcess) -> bool:
        # Fresh ids each step (a random seed): replaying the last step's ids would find them cached.
        experiment = Experiment(
            settings=settings, path=path, connections=connections, duration=duration,
            warmup=warmup, rate=rate, ids=ids, zipf_s=zipf_s, name="capacity",
            labels={"capacity": search_id},
        )  # fmt: skip
        run = experiment.run(stack, store=store, progress=False, service=svc)
        # an overloaded step leaves queued requests: the next step starts on an idle service
        if not svc.wait_idle():
            raise StackError(
                f"the service still had requests in flight after the step at {rate:,.0f} req/s; "
                f"log {svc.log}"
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

    good: float | None = None
    bad: float | None = None
    with ServiceProcess(settings, stack) as svc:
        rate = start
        while rate <= limit:
            if measure(rate, svc):
                good = rate
                rate *= factor
            else:
                bad = rate
                break
        # The first step already broke: step down until a rate holds (or give up).
        rate = start / factor
        while good is None and bad is not None and rate >= start / factor**4:
            if measure(rate, svc):
                good = rate
            else:
                bad = rate
                rate /= factor
        if good is not None and bad is not None:
            for _ in range(bisections):
                middle = (good + bad) / 2
                if measure(middle, svc):
                    good = middle
                else:
                    bad = middle
    broken: list[str] = verdicts[bad][0] if bad is not None else []
    bottleneck = verdicts[bad][1].manifest["bottleneck"] if bad is not None else {}
    points = pd.DataFrame(rows).sort_values("rate").reset_index(drop=True)
    return Capacity(
        max_rate=good, broke_at=bad, broken=tuple(broken), bottleneck=bottleneck, points=points
    )
