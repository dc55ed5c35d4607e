"""RunResult: everything one measured run produced — manifest, summary, client and server series, HDR."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from workbench import anatomy, cost, hdr


class RunStatus(StrEnum):
    """How a run ended, as its manifest and summary row store it (plain strings in JSON)."""

    RUNNING = "running"  # begun, not yet saved (Store.unfinished)
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: the partial result is kept
    CRASHED = "crashed"  # the service, a load worker or the workbench died: a sweep redoes it


STATUSES = tuple(s.value for s in RunStatus if s is not RunStatus.RUNNING)


@dataclass(frozen=True, eq=False)
class RunResult:
    """One run: what was asked (manifest), what the client saw, what the server did."""

    run_id: str
    manifest: dict[str, Any]
    summary_row: dict[str, Any]
    client: pd.DataFrame
    server: pd.DataFrame
    hdr_latency: bytes
    hdr_service: bytes = field(default=b"")
    anatomy_table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def status(self) -> RunStatus:
        """finished, interrupted or crashed."""
        return RunStatus(self.manifest.get("status", RunStatus.FINISHED))

    def series(self) -> pd.DataFrame:
        """Client per-second series (second, rate, errors, p50_ms, p95_ms, p99_ms, ...)."""
        return self.client

    def histogram(self, kind: str = "latency") -> pd.DataFrame:
        """Percentile spectrum of latency (from the intended send) or service time."""
        blob = self.hdr_service if kind == "service" and self.hdr_service else self.hdr_latency
        return hdr.spectrum(blob)

    def anatomy(self) -> pd.DataFrame:
        """Where a request's time went in the service: one row per stage (and `other`), with
        mean ms per request, P50/P95 ms among requests through it, share, % of requests."""
        return anatomy.stages(self.anatomy_table)

    def anatomy_ms(self) -> dict[str, float]:
        """Mean ms per request by stage (they add up to the mean service time)."""
        return {str(k): float(v) for k, v in self.anatomy()["mean_ms"].items()}

    def service_time_ms(self) -> dict[str, float]:
        """The service-side time per request (`total_*`) and the sum of its stages (`accounted_*`):
        mean, P50 and P95 in ms, from the anatomy histograms."""
        out: dict[str, float] = {}
        for name in (anatomy.TOTAL, anatomy.ACCOUNTED):
            if name in self.anatomy_table.index:
                for column in ("mean_ms", "p50_ms", "p95_ms"):
                    out[f"{name}_{column}"] = float(self.anatomy_table[column][name])
        return out

    def summary(self) -> dict[str, Any]:
        """The one-row summary: run id, status, settings and the measured numbers."""
        return dict(self.summary_row)

    def to_frame(self) -> pd.DataFrame:
        """Client and server series joined on the second of the run."""
        if self.server.empty or "second" not in self.server:
            return self.client.copy()
        server = self.server.drop(columns=["time", "since"], errors="ignore")
        return self.client.merge(server, on="second", how="left", suffixes=("", "_server"))

    def cpu_ms_per_request(self) -> dict[str, float]:
        """Component (service, postgres, redis, upstream, generator, server) → CPU ms per request.

        CPU-seconds each component used in the measured window (warm-up excluded) over the
        requests completed in it; only the components whose processes were watched.
        """
        return cost.from_summary(self.summary_row)

    def projection(self, *, cores: int, hosts: int = 1) -> cost.Projection:
        """The request rate this run's CPU per request allows on cores × hosts, if CPU-bound."""
        return cost.project(
            self.cpu_ms_per_request(),
            cores=cores,
            hosts=hosts,
            measured_cores=self.manifest.get("environment", {}).get("cpu_count"),
            measured_rps=self.summary_row.get("throughput_rps"),
        )
