"""Cost per request: CPU milliseconds each component spends on one request, and what they allow."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workbench._errors import positive_int

# Components in the order they are shown; the server side is what a fleet has to provision.
SERVER = ("service", "postgres", "redis", "upstream")
COMPONENTS = (*SERVER, "generator")
PREFIX = "cpu_ms_per_request_"
LABELS = {
    "service": "service",
    "postgres": "PostgreSQL",
    "redis": "Redis",
    "upstream": "upstream",
    "generator": "generator (client side)",
    "server": "server side",
}


def per_request(cpu_seconds: Mapping[str, float], completed: int) -> dict[str, float]:
    """Summary columns cpu_ms_per_request_<component> (+ _server) from CPU-seconds in the window.

    A component that was not watched (no process of it seen) is NaN; `server` sums the server
    side's watched components, NaN when none was.
    """
    row: dict[str, float] = {}
    for name in COMPONENTS:
        seconds = cpu_seconds.get(name)
        row[PREFIX + name] = (
            1000.0 * seconds / completed if seconds is not None and completed > 0 else math.nan
        )
    server = [row[PREFIX + name] for name in SERVER if not math.isnan(row[PREFIX + name])]
    row[PREFIX + "server"] = sum(server) if server else math.nan
    return row


def from_summary(summary: Mapping[str, Any]) -> dict[str, float]:
    """Component → CPU ms per request from a summary row (only the components measured)."""
    out: dict[str, float] = {}
    for name in (*COMPONENTS, "server"):
        value = summary.get(PREFIX + name)
        if value is not None and not math.isnan(float(value)):
            out[name] = float(value)
    return out


@dataclass(frozen=True)
class Projection:
    """The request rate the measured CPU per request allows on `cores` × `hosts` (CPU-bound)."""

    cores: int
    hosts: int
    cpu_ms_per_request: dict[str, float]  # server-side components (service, postgres, ...)
    server_cpu_ms: float
    rate_rps: float  # everything on the same cores × hosts
    service_only_rps: float  # the service alone, PostgreSQL and Redis on hosts of their own
    shares: dict[str, float]  # component → fraction of the server side's CPU
    busiest: str
    note: str
    unmeasured: tuple[str, ...] = ()  # server components whose processes were not watched
    measured_cores: int | None = None  # the machine the costs were measured on
    measured_rps: float | None = None  # at this throughput

    def sentence(self) -> str:
        """The projection in one sentence, its assumption included."""
        if math.isnan(self.rate_rps):
            return "No server-side CPU was measured for this run: nothing to project."
        where = ", ".join(
            f"{LABELS[name]} {ms:.2f}"
            for name, ms in self.cpu_ms_per_request.items()
            if ms >= 0.005  # an idle component (the upstream of an endpoint without one) is noise
        )
        measured = ""
        if self.measured_cores is not None and self.measured_rps is not None:
            measured = (
                f"; measured on {self.measured_cores} cores at {self.measured_rps:,.0f} req/s"
            )
        fleet = f"{self.cores} cores" + (f" × {self.hosts} hosts" if self.hosts > 1 else "")
        alone = (
            f"; the service alone, with PostgreSQL and Redis on hosts of their own, "
            f"~{self.service_only_rps:,.0f} req/s"
            if not math.isnan(self.service_only_rps)
            else ""
        )
        missing = ""
        if self.unmeasured:
            names = ", ".join(LABELS[name] for name in self.unmeasured)
            missing = f" ({names} not measured: not started by the workbench, so not counted)"
        return (
            f"Projection (CPU-bound): {self.server_cpu_ms:.2f} ms of server CPU per request "
            f"({where} ms; {self.shares[self.busiest]:.0%} in {LABELS[self.busiest]}{measured}) "
            f"allows at most ~{self.rate_rps:,.0f} req/s on {fleet}{alone}{missing}. "
            f"Assumption: {self.note}"
        )


NOTE = (
    "throughput is limited only by CPU and scales linearly with cores — every core busy, no "
    "lock, pool, I/O, network or coordination limit, and each request costing the CPU measured "
    "here. That cost depends on the run: at a low rate each event-loop pass, timer and scrape "
    "serves fewer requests, and neighbours on a shared machine add cache misses and context "
    "switches — measure near saturation on a quiet machine. Real fleets reach less."
)


def project(
    per_request_ms: Mapping[str, float],
    *,
    cores: int,
    hosts: int = 1,
    measured_cores: int | None = None,
    measured_rps: float | None = None,
) -> Projection:
    """The rate cores × hosts × 1000 / (server CPU ms per request), and the service alone's."""
    cores = positive_int("cores", cores)
    hosts = positive_int("hosts", hosts)
    parts = {
        name: float(per_request_ms[name])
        for name in SERVER
        if name in per_request_ms and not math.isnan(float(per_request_ms[name]))
    }
    total = sum(parts.values())
    budget = cores * hosts * 1000.0  # CPU ms per second of wall time
    rate = budget / total if total > 0 else math.nan
    service = parts.get("service", math.nan)
    service_rate = budget / service if service > 0 else math.nan
    shares = {name: ms / total for name, ms in parts.items()} if total > 0 else {}
    busiest = max(shares, key=shares.__getitem__) if shares else ""
    return Projection(
        cores=cores,
        hosts=hosts,
        cpu_ms_per_request=parts,
        server_cpu_ms=total if parts else math.nan,
        rate_rps=rate,
        service_only_rps=service_rate,
        shares=shares,
        busiest=busiest,
        note=NOTE,
        unmeasured=tuple(name for name in SERVER[:3] if name not in parts),
        measured_cores=measured_cores,
        measured_rps=measured_rps,
    )
