"""Pool-size advice from a run's own numbers: Little's law on the measured connection hold time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from service.settings import ServiceSettings
from workbench._errors import InputError
from workbench.run import RunResult

HEADROOM = 1.5  # bursts: Poisson arrivals at the mean need ~1.5x the mean concurrency at P99
RESERVED = 3  # connections PostgreSQL keeps for superusers and the workbench's own checks


@dataclass(frozen=True)
class PoolAdvice:
    """Recommended pool_size and max_overflow per worker, with the numbers behind them."""

    pool_size: int
    max_overflow: int
    workers: int
    checkouts_per_s: float
    hold_ms: float
    busy_connections: float
    max_connections: int
    capped: bool

    def sentence(self) -> str:
        """The advice in words."""
        text = (
            f"The service checked out {self.checkouts_per_s:,.0f} connections/s and held each "
            f"{self.hold_ms:.2f} ms on average: {self.busy_connections:.1f} busy at once (Little's "
            f"law). Per worker (x{self.workers}): pool_size={self.pool_size}, "
            f"max_overflow={self.max_overflow}."
        )
        if self.capped:
            text += (
                f" Capped so that all workers stay under max_connections={self.max_connections}; "
                "more workers need a bigger database limit or a pooler (PgBouncer)."
            )
        return text

    def settings(self, base: ServiceSettings) -> ServiceSettings:
        """base with the advised pool."""
        return base.replace(pool_size=self.pool_size, max_overflow=self.max_overflow)


def advise(
    run: RunResult,
    *,
    max_connections: int,
    workers: int | None = None,
    target_rps: float | None = None,
    headroom: float = HEADROOM,
) -> PoolAdvice:
    """Advice for serving target_rps (default: the rate this run served) with `workers` workers."""
    server = run.server
    needed = ("checkouts_per_s", "hold_ms")
    if server.empty or any(c not in server for c in needed):
        raise InputError(
            "run", "has no pool hold-time samples (was it run against the bundled service?)"
        )
    active = server[server["checkouts_per_s"] > 0]
    if active.empty:
        raise InputError("run", "made no database checkouts; nothing to size (all cache hits?)")
    checkouts = float(active["checkouts_per_s"].mean())
    hold_s = (
        float(
            (active["hold_ms"] * active["checkouts_per_s"]).sum() / active["checkouts_per_s"].sum()
        )
        / 1000
    )
    served = float(run.summary().get("throughput_rps") or 0.0)
    scale = (target_rps / served) if target_rps and served else 1.0
    workers = workers or int(run.manifest.get("settings", {}).get("workers", 1))
    busy = checkouts * scale * hold_s
    per_worker = busy / workers
    pool = max(1, math.ceil(per_worker))
    overflow = max(0, math.ceil(per_worker * headroom) - pool)
    budget = max(1, (max_connections - RESERVED) // workers)
    capped = pool + overflow > budget
    if capped:
        pool = min(pool, budget)
        overflow = max(0, budget - pool)
    return PoolAdvice(
        pool_size=pool,
        max_overflow=overflow,
        workers=workers,
        checkouts_per_s=checkouts * scale,
        hold_ms=hold_s * 1000,
        busy_connections=busy,
        max_connections=max_connections,
        capped=capped,
    )


def advice_frame(advice: PoolAdvice, current: ServiceSettings) -> pd.DataFrame:
    """Current against advised pool settings, side by side."""
    return pd.DataFrame(
        {
            "current": [current.pool_size, current.max_overflow, current.workers],
            "advised": [advice.pool_size, advice.max_overflow, advice.workers],
        },
        index=pd.Index(["pool_size", "max_overflow", "workers"]),
    )
