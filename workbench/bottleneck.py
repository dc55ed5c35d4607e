"""Bottleneck attribution: which resource limited a run, in a field and a short sentence."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandas as pd

from service.anatomy import Stage
from service.settings import ServiceSettings
from workbench import anatomy as _anatomy
from workbench.load._result import Cause


class Kind(StrEnum):
    """What limited a run (the value is what tables and stored runs show)."""

    GENERATOR = "generator saturated"
    MACHINE = "machine shared"
    CONNECTIONS = "connections exhausted"
    POOL = "database pool exhausted"
    LOOP = "event loop blocked"
    DATABASE_CPU = "database CPU"
    SERVICE_CPU = "CPU-bound workers"
    CACHE = "cache misses"
    NONE = "none found"


KINDS = tuple(Kind)
# Causes that are the generator's own doing (all connections busy alone is the service's).
GENERATOR_CAUSES = frozenset({Cause.GENERATOR_BUSY, Cause.ARRIVALS_DROPPED})


# Processes outside the run using more than this (% of one core) make its numbers unreliable.
OTHERS_LIMIT_PCT = 30.0


@dataclass(frozen=True)
class Bottleneck:
    """What limited a run: its kind (a code), and the evidence in a sentence."""

    kind: Kind
    sentence: str


def _mean(frame: pd.DataFrame, column: str) -> float:
    if column not in frame or frame[column].dropna().empty:
        return math.nan
    return float(frame[column].dropna().mean())


def _high(frame: pd.DataFrame, column: str, q: float = 0.9) -> float:
    if column not in frame or frame[column].dropna().empty:
        return math.nan
    return float(frame[column].dropna().quantile(q))


def _per_request(cpu_ms: Mapping[str, float] | None, name: str, what: str) -> str:
    """' (0.42 ms of <what> CPU per request)' when the run's cost per request is known."""
    ms = (cpu_ms or {}).get(name, math.nan)
    return f" ({ms:.2f} ms of {what} CPU per request)" if ms == ms else ""


def attribute(
    summary: dict[str, Any],
    server: pd.DataFrame,
    settings: ServiceSettings | None,
    *,
    anatomy: pd.DataFrame | None = None,
    cpu_ms: Mapping[str, float] | None = None,
) -> Bottleneck:
    """Name the bottleneck of a run, citing where a request's time went when the anatomy is known.

    cpu_ms: the run's CPU ms per request by component (cost.from_summary), cited when CPU limits.
    """
    verdict = _attribute(summary, server, settings, cpu_ms)
    if anatomy is None or anatomy.empty or verdict.kind is Kind.GENERATOR:
        return verdict
    stage = _EVIDENCE.get(verdict.kind)
    cited = _anatomy.sentence(anatomy, stage=stage)
    return Bottleneck(verdict.kind, f"{verdict.sentence} {cited}".strip())


# The anatomy stage that is the evidence for a kind (else the biggest stage is cited).
_EVIDENCE: dict[Kind, str] = {
    Kind.POOL: Stage.POOL,
    Kind.LOOP: Stage.QUEUE,
    Kind.CACHE: Stage.L2,
}


def _attribute(
    summary: dict[str, Any],
    server: pd.DataFrame,
    settings: ServiceSettings | None,
    cpu_ms: Mapping[str, float] | None = None,
) -> Bottleneck:
    """The first rule that holds, from a run's summary and server series."""
    causes = {Cause(c) for c in summary.get("saturation_causes") or ()}
    # "All connections busy" alone means the service answered slower than the asked rate needs
    # (Little's law): that is the service's doing, so look for the cause on the server first.
    cap_only = Cause.CONNECTIONS_BUSY in causes and not causes & GENERATOR_CAUSES
    if summary.get("generator_saturated") and not cap_only:
        return Bottleneck(
            Kind.GENERATOR,
            f"The load generator could not keep up ({summary.get('saturation_reason')}); "
            "these numbers describe the client, not the service.",
        )
    others = _mean(server, "other_cpu_pct")
    if others > OTHERS_LIMIT_PCT:
        return Bottleneck(
            Kind.MACHINE,
            f"Processes outside this run used {others:.0f}% CPU (of one core) on average: "
            "the service and the generator shared the machine, so these numbers are disturbed — "
            "rerun when the machine is quiet.",
        )
    workers = settings.workers if settings else 1
    capacity = settings.max_db_connections() if settings else math.nan
    wait = _mean(server, "pool_wait_ms")  # includes opening new connections: a weak signal alone
    checked_out = _high(server, "pool_checked_out")
    overflow = _high(server, "pool_overflow")  # connections opened beyond pool_size
    full = checked_out >= 0.9 * capacity if capacity == capacity else False
    if full or (wait > 5.0 and (checked_out >= 0.5 * capacity or overflow > 0)):
        return Bottleneck(
            Kind.POOL,
            f"Requests waited {wait:.1f} ms on average for a database connection; up to "
            f"{checked_out:.0f} of {capacity:.0f} pooled connections were checked out"
            + (f", {overflow:.0f} of them opened beyond pool_size" if overflow > 0 else "")
            + ".",
        )
    # More connections opened than the pools keep: overflow connections are opened for a burst
    # and closed on return, each a new database backend and handshake (pool churn).
    opened = float(server["connects_per_s"].sum()) if "connects_per_s" in server else 0.0
    kept = math.nan
    if settings is not None:
        kept = workers * (
            settings.pool_size + (settings.read_pool_size if settings.read_split else 0)
        )
    if opened > kept and wait > 1.0:
        return Bottleneck(
            Kind.POOL,
            f"The pools opened {opened:.0f} new database connections during the run, more than "
            f"the {kept:.0f} they keep: bursts overflowed pool_size and each overflow "
            f"connection was opened and closed again; requests waited {wait:.1f} ms on average "
            "for a connection.",
        )
    lag = _high(server, "loop_lag_ms")
    service_cpu = _mean(server, "service_cpu_pct")
    if lag > 20 and (service_cpu != service_cpu or service_cpu < 80 * workers):
        return Bottleneck(
            Kind.LOOP,
            f"The event loop lagged {lag:.0f} ms (P90 of seconds) while the workers' CPU was "
            f"{service_cpu:.0f}%: something blocks the loop (a sync call in an async handler).",
        )
    db_cpu = _mean(server, "postgres_cpu_pct")
    machine = _mean(server, "machine_cpu_pct")
    busy = machine >= 90  # every core of the machine is in use: the biggest consumer limits
    where = f" on a machine {machine:.0f}% busy" if machine == machine else ""
    if (db_cpu > 60 or busy) and db_cpu >= service_cpu:
        return Bottleneck(
            Kind.DATABASE_CPU,
            f"PostgreSQL used {db_cpu:.0f}% CPU, more than the service's {service_cpu:.0f}%"
            f"{where}: the database is the busiest part"
            f"{_per_request(cpu_ms, 'postgres', 'PostgreSQL')}.",
        )
    if service_cpu >= 85 * workers or (busy and service_cpu > db_cpu):
        return Bottleneck(
            Kind.SERVICE_CPU,
            f"The service's {workers} worker(s) used {service_cpu:.0f}% CPU "
            f"({service_cpu / workers:.0f}% each){where}: CPU per request is the limit"
            f"{_per_request(cpu_ms, 'service', 'service')} — "
            "more cores, more workers or less work per request.",
        )
    hit = _mean(server, "l1_hit_ratio")
    if settings is not None and settings.cache and hit == hit and hit < 0.5:
        return Bottleneck(
            Kind.CACHE,
            f"The L1 cache answered only {hit:.0%} of lookups; most requests reach Redis or the database.",
        )
    if cap_only and summary.get("generator_saturated"):
        return Bottleneck(
            Kind.CONNECTIONS,
            "Every connection was waiting on the service: it answered slower than the asked rate "
            "needs, and requests queued (counted in the corrected latency).",
        )
    return Bottleneck(
        Kind.NONE,
        "No resource was saturated: the service had headroom at this load.",
    )
