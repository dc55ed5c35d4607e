"""Anatomy: where a run's requests spent their time in the service, stage by stage.

Read from the service's `anatomy_seconds` histograms (service/anatomy.py): two scrapes, one as
the measured window begins and one after it ends, and the difference between them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
from prometheus_client.metrics_core import Metric

from service.anatomy import ACCOUNTED, STAGES, TOTAL, Stage

__all__ = ["ACCOUNTED", "OTHER", "TOTAL", "Snapshot", "between", "frame", "sentence", "snapshot"]

METRIC = "anatomy_seconds"
OTHER = "other"  # service time no stage claims: code between the timed stages
COLUMNS = ("mean_ms", "p50_ms", "p95_ms", "share", "requests_pct")
# What each stage is, for tables and hover text.
LABELS: dict[str, str] = {
    Stage.QUEUE: "waiting for the event loop",
    Stage.ROUTING: "routing and validation",
    Stage.L1: "L1 cache lookup",
    Stage.L2: "L2 (Redis) round trips",
    Stage.BATCHER: "batcher wait",
    Stage.POOL: "pool checkout wait",
    Stage.QUERY: "query",
    Stage.SERIALIZE: "serialization",
    Stage.UPSTREAM: "upstream call",
    Stage.COMPUTE: "CPU work",
    Stage.RESPONSE: "response sending",
    OTHER: "unaccounted",
}


@dataclass(frozen=True)
class Snapshot:
    """The anatomy histograms at one scrape: cumulative counts per bucket bound, and sums."""

    bounds: tuple[float, ...]
    counts: dict[str, tuple[float, ...]]
    sums: dict[str, float]

    def minus(self, before: Snapshot | None) -> Snapshot:
        """What was recorded between `before` and this snapshot."""
        if before is None:
            return self
        counts = {
            name: tuple(a - b for a, b in zip(row, before.counts.get(name, ()), strict=False))
            if name in before.counts
            else row
            for name, row in self.counts.items()
        }
        sums = {name: value - before.sums.get(name, 0.0) for name, value in self.sums.items()}
        return Snapshot(bounds=self.bounds, counts=counts, sums=sums)

    def requests(self) -> int:
        """Requests recorded (the total series' count)."""
        row = self.counts.get(TOTAL)
        return int(row[-1]) if row else 0

    def quantile(self, name: str, q: float) -> float:
        """The q-quantile of a series in seconds, interpolated within its bucket (NaN if empty)."""
        row = self.counts.get(name)
        if not row or row[-1] <= 0:
            return math.nan
        rank = q * row[-1]
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in zip(self.bounds, row, strict=False):
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                inside = count - lower_count
                fraction = (rank - lower_count) / inside if inside else 1.0
                return lower_bound + (bound - lower_bound) * fraction
            lower_bound, lower_count = bound, count
        return lower_bound


def snapshot(families: Iterable[Metric]) -> Snapshot | None:
    """The anatomy histograms in parsed /metrics families (None when the service has none)."""
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    for family in families:
        if family.name != METRIC:
            continue
        for sample in family.samples:
            name = sample.labels.get("stage", "")
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                series = buckets.setdefault(name, {})
                series[bound] = series.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                sums[name] = sums.get(name, 0.0) + sample.value
    if not buckets:
        return None
    bounds = tuple(sorted(next(iter(buckets.values()))))
    counts = {name: tuple(series.get(b, 0.0) for b in bounds) for name, series in buckets.items()}
    return Snapshot(bounds=bounds, counts=counts, sums=sums)


def between(snapshots: Sequence[tuple[float, Snapshot]], *, start: float | None) -> Snapshot | None:
    """What was recorded from the first snapshot at or after `start` (epoch s) to the last one."""
    if not snapshots:
        return None
    last = snapshots[-1][1]
    if start is None:
        return last.minus(snapshots[0][1] if len(snapshots) > 1 else None)
    first = next((snap for at, snap in snapshots if at >= start), None)
    if first is None or first is last:
        # Nothing scraped inside the window but its end: take the last one before it.
        earlier = [snap for at, snap in snapshots if at < start]
        first = earlier[-1] if earlier else None
    return last.minus(first)


def frame(window: Snapshot | None) -> pd.DataFrame:
    """One row per stage (and `other`, the unaccounted rest): mean ms per request, P50/P95 ms
    among requests that went through it, share of the service time, % of requests with it.

    The means add up to the mean service time; the two rows `total` and `accounted` (the sum of
    a request's stages) follow, with the same columns.
    """
    if window is None or window.requests() == 0:
        return pd.DataFrame(columns=list(COLUMNS)).rename_axis("stage")
    requests = window.requests()
    total_s = window.sums.get(TOTAL, 0.0)
    rows = {}
    for name in (*STAGES, OTHER, TOTAL, ACCOUNTED):
        if name == OTHER:
            seconds = total_s - window.sums.get(ACCOUNTED, 0.0)
            rows[name] = {
                "mean_ms": 1000 * seconds / requests,
                "p50_ms": math.nan,
                "p95_ms": math.nan,
                "share": seconds / total_s if total_s else math.nan,
                "requests_pct": math.nan,
            }
            continue
        row = window.counts.get(name)
        seen = row[-1] if row else 0.0
        if name in STAGES and not seen:
            continue
        seconds = window.sums.get(name, 0.0)
        rows[name] = {
            "mean_ms": 1000 * seconds / requests,
            "p50_ms": 1000 * window.quantile(name, 0.5),
            "p95_ms": 1000 * window.quantile(name, 0.95),
            "share": seconds / total_s if total_s else math.nan,
            "requests_pct": 100 * seen / requests,
        }
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))
    out.index.name = "stage"
    return out


def stages(table: pd.DataFrame) -> pd.DataFrame:
    """The stage rows of an anatomy frame (and `other`), without the totals."""
    return table.drop(index=[TOTAL, ACCOUNTED], errors="ignore")


def largest(table: pd.DataFrame) -> str | None:
    """The stage taking the most time per request (not counting `other`)."""
    parts = stages(table).drop(index=[OTHER], errors="ignore")
    if parts.empty:
        return None
    return str(parts["mean_ms"].idxmax())


def sentence(table: pd.DataFrame, *, stage: str | None = None) -> str:
    """Where the time goes, in one sentence: a stage (default the biggest) against the request."""
    name = stage if stage is not None and stage in table.index else largest(table)
    if name is None or TOTAL not in table.index:
        return ""
    row, total = table.loc[name], table.loc[TOTAL]
    return (
        f"Per request in the service: {LABELS.get(name, name)} {row['mean_ms']:.2f} of "
        f"{total['mean_ms']:.2f} ms on average ({row['share']:.0%}); "
        f"service time P50 {total['p50_ms']:.2f} ms."
    )
