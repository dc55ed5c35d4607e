"""A simple closed-loop httpx load: a stand-in until the load engine lands (workbench.load)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from workbench import hdr
from workbench._aio import run_sync
from workbench._errors import positive_float, positive_int


@dataclass(frozen=True)
class QuickResult:
    """What a quick load measured: per-second rows and the latency histogram (encoded)."""

    url: str
    connections: int
    duration_s: float
    rows: tuple[dict[str, float], ...]
    hdr: bytes

    def histogram(self) -> pd.DataFrame:
        """Percentile spectrum: percentile, latency_ms, inverse_tail = 1/(1-p)."""
        return hdr.spectrum(self.hdr)

    def series(self) -> pd.DataFrame:
        """One row per second: completed, errors, rate, p50/p95/p99 in ms."""
        return pd.DataFrame(list(self.rows))

    def summary(self) -> dict[str, Any]:
        """Totals and percentiles of the whole run."""
        frame = self.series()
        requests = int(frame["completed"].sum()) if len(frame) else 0
        errors = int(frame["errors"].sum()) if len(frame) else 0
        return {
            "requests": requests,
            "errors": errors,
            "duration_s": self.duration_s,
            "throughput_rps": requests / self.duration_s if self.duration_s else 0.0,
            "latency_ms": hdr.percentiles_ms(self.hdr),
        }


def quick_load(
    url: str,
    *,
    connections: int = 16,
    duration: float = 3.0,
    id_range: int = 1000,
    seed: int = 1,
) -> QuickResult:
    """Closed-loop load over `connections` httpx clients for `duration` s; `{id}` in url is random."""
    connections = positive_int("connections", connections)
    duration = positive_float("duration", duration)
    return run_sync(_run(url, connections, duration, id_range, seed))


async def _run(
    url: str, connections: int, duration: float, id_range: int, seed: int
) -> QuickResult:
    rng = random.Random(seed)
    total = hdr.new()
    per_second: dict[int, tuple[Any, list[int]]] = {}
    clients = [httpx.AsyncClient(timeout=10) for _ in range(connections)]
    start = time.perf_counter()
    stop_at = start + duration

    async def user(client: httpx.AsyncClient) -> None:
        while (now := time.perf_counter()) < stop_at:
            target = url.replace("{id}", str(rng.randint(1, id_range)))
            ok = True
            try:
                answer = await client.get(target)
                ok = answer.status_code < 400
            except httpx.HTTPError:
                ok = False
            done = time.perf_counter()
            micros = max(hdr.LOWEST_US, int((done - now) * 1e6))
            second = int(done - start)
            hist, counts = per_second.setdefault(second, (hdr.new(), [0, 0]))
            hist.record_value(micros)
            total.record_value(micros)
            counts[0] += 1
            counts[1] += 0 if ok else 1

    try:
        await asyncio.gather(*(user(c) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    rows = []
    for second in sorted(per_second):
        if second >= int(duration):
            continue  # the last partial second would read as a drop
        hist, (completed, errors) = per_second[second]
        rows.append(
            {
                "second": float(second),
                "completed": float(completed),
                "errors": float(errors),
                "rate": float(completed),
                "p50_ms": hist.get_value_at_percentile(50) / 1000,
                "p95_ms": hist.get_value_at_percentile(95) / 1000,
                "p99_ms": hist.get_value_at_percentile(99) / 1000,
            }
        )
    return QuickResult(
        url=url, connections=connections, duration_s=duration, rows=tuple(rows), hdr=total.encode()
    )
