"""LoadResult: the merged outcome of a load run (summary, per-second series, HDR histograms)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from workbench import hdr as hist

if TYPE_CHECKING:
    import pandas as pd


class Cause(StrEnum):
    """Why the generator, not the server, limited a run: a code each (the sentence tells people)."""

    RATE_SHORT = "rate_short"  # it sent fewer requests than the profile asked
    SEND_LAG = "send_lag"  # requests went out later than intended
    GENERATOR_BUSY = "generator_busy"  # it ran, or waited for a core, nearly all the time
    CONNECTIONS_BUSY = "connections_busy"  # every connection was waiting on the server
    ARRIVALS_DROPPED = "arrivals_dropped"  # the backlog of due requests was full


ERROR_CLASSES = ("status_4xx", "status_5xx", "timeout", "connect", "reset", "other")
HISTOGRAM_KINDS = ("latency", "service")
SERIES_COLUMNS = (
    "second",
    "sent",
    "completed",
    "late",
    "errors",
    *ERROR_CLASSES,
    "rate",
    "asked_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "send_lag_p99_ms",
    "generator_cpu_pct",
    "generator_busy_pct",
    "cap_waits",
    "dropped",
    "stale",
)


class WarmupEnd(StrEnum):
    """How a run's warm-up ended: what its `warmup_s` means."""

    NONE = "none"  # no warm-up asked
    FIXED = "fixed"  # it lasted the seconds asked
    STEADY = "steady"  # latency was steady before the cap: measured from then
    CAPPED = "capped"  # latency never got steady: measured after the cap, the seconds asked


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured: counts, HDR histograms, one row per second, self-check."""

    url: str
    transport: str
    processes: int
    connections: int
    arrival: str | None
    asked_rate: float | None
    duration_s: float
    warmup_s: float
    requests: int
    completed: int
    late: int
    sent: int
    errors: int
    error_classes: Mapping[str, int]
    hdr_latency: bytes = field(repr=False)
    hdr_service: bytes = field(repr=False)
    hdr_send_lag: bytes = field(repr=False)
    connections_used: int
    rows: tuple[Mapping[str, Any], ...] = field(repr=False)
    worker_requests: tuple[int, ...]
    generator_saturated: bool
    saturation_reason: str | None
    saturation_causes: tuple[Cause, ...] = ()
    # The generator's own errors, apart from the service's: stale_connection counts requests sent
    # on a kept-alive connection the server closed for idleness as they went out (resent once).
    generator_errors: Mapping[str, int] = field(default_factory=dict)
    started_at: float = 0.0  # wall-clock (epoch s) start of the measured window
    workers: tuple[str, ...] = ()  # Dask worker address of each generator; empty when local
    clock_skew_ms: float | None = None  # max |clock offset| of the Dask workers vs the client
    worker_hdr_latency: tuple[bytes, ...] = field(default=(), repr=False)
    interrupted: bool = False  # stopped early: counts and series cover the seconds collected
    failure: str | None = None  # why it stopped early when not by Ctrl-C (a load worker died)
    warmup_end: WarmupEnd = WarmupEnd.FIXED  # how the warm-up ended (what warmup_s means)

    @property
    def throughput_rps(self) -> float:
        """Responses (any status) received within the measured window, per second."""
        return self.completed / self.duration_s if self.duration_s else 0.0

    def percentiles_ms(self, kind: str = "latency") -> dict[str, float]:
        """p50, p90, p95, p99, p999 and max in milliseconds of the latency or service time."""
        return {name: _clean(value) for name, value in hist.percentiles(self._blob(kind)).items()}

    def summary(self) -> dict[str, Any]:
        """One flat-ish dict describing the run (JSON-serialisable)."""
        lag = hist.decode(self.hdr_send_lag)
        return {
            "url": self.url,
            "transport": self.transport,
            "processes": self.processes,
            "connections": self.connections,
            "connections_used": self.connections_used,
            "arrival": self.arrival,
            "requests": self.requests,
            "late_responses": self.late,
            "errors": self.errors,
            "error_classes": dict(self.error_classes),
            "generator_errors": dict(self.generator_errors),
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "warmup_end": str(self.warmup_end),
            "throughput_rps": self.throughput_rps,
            "asked_rate": self.asked_rate,
            "latency_ms": self.percentiles_ms("latency"),
            "service_time_ms": self.percentiles_ms("service"),
            "send_lag_p99_ms": _clean(hist.percentile_ms(lag, 99)) if self.asked_rate else 0.0,
            "generator_saturated": self.generator_saturated,
            "saturation_reason": self.saturation_reason,
            "saturation_causes": [str(c) for c in self.saturation_causes],
            **(
                {"workers": list(self.workers), "clock_skew_ms": self.clock_skew_ms}
                if self.workers
                else {}
            ),
            "interrupted": self.interrupted,
            "failure": self.failure,
        }

    def series(self) -> pd.DataFrame:
        """One row per second since measurement start: counts, error classes, rate, percentiles."""
        import pandas as pd

        frame = pd.DataFrame([dict(r) for r in self.rows], columns=list(SERIES_COLUMNS))
        return frame.astype({"asked_rate": "float64"})

    def histogram(self, kind: str = "latency") -> pd.DataFrame:
        """Percentile spectrum: percentile (%), latency_ms, inverse_tail = 1/(1-p) (log axis)."""
        return hist.spectrum(self._blob(kind))

    def text(self) -> str:
        """A short human summary."""
        lat = self.percentiles_ms("latency")
        svc = self.percentiles_ms("service")
        mode = (
            f"open loop, asked {self.asked_rate:,.0f} req/s ({self.arrival})"
            if self.asked_rate is not None
            else "closed loop"
        )
        errors = ", ".join(f"{k} {v}" for k, v in self.error_classes.items() if v) or "none"
        lines = [
            f"{self.url}: {mode}, {self.connections} connections, {self.processes} process(es), "
            f"{self.transport} transport, {self.duration_s:g} s",
            f"  throughput {self.throughput_rps:,.1f} req/s, {self.requests:,} requests, "
            f"errors {self.errors:,} ({errors})",
            "  latency ms  " + _fmt(lat),
            "  service ms  " + _fmt(svc),
        ]
        own = sum(self.generator_errors.values())
        if own:
            lines.append(
                f"  generator's own errors {own:,} (stale keep-alive connections, resent once): "
                "not the service's, not in errors"
            )
        if self.workers:
            lines.append(
                f"  generated on {len(set(self.workers))} Dask worker(s), clock skew "
                f"{self.clock_skew_ms or 0.0:.1f} ms: " + ", ".join(sorted(set(self.workers)))
            )
        if self.failure:
            lines.append(
                f"  FAILED: {self.failure}; partial result of the first {self.duration_s:g} s"
            )
        elif self.interrupted:
            lines.append(f"  INTERRUPTED: partial result of the first {self.duration_s:g} s")
        if self.generator_saturated:
            lines.append(f"  GENERATOR SATURATED: {self.saturation_reason}")
        return "\n".join(lines)

    def _blob(self, kind: str) -> bytes:
        if kind == "latency":
            return self.hdr_latency
        if kind == "service":
            return self.hdr_service
        from workbench._errors import InputError, allowed

        raise InputError("kind", f"must be one of {allowed(HISTOGRAM_KINDS)}, got {kind!r}")


def _clean(value: float) -> float:
    return 0.0 if math.isnan(value) else round(value, 3)


def _fmt(values: Mapping[str, float]) -> str:
    return "  ".join(f"{k} {v:.2f}" for k, v in values.items())


class LoadInterrupted(KeyboardInterrupt):
    """Ctrl-C/SIGTERM during a load run; `.result` holds what was measured until then (or None)."""

    def __init__(self, result: LoadResult | None) -> None:
        super().__init__("load run interrupted")
        self.result = result
        self.run_id: str | None = None  # the stored run holding the partial result, if one did


class LoadFailed(RuntimeError):
    """A load worker died or failed mid-run; `.result` holds what was measured until then (or None)."""

    def __init__(self, message: str, result: LoadResult | None) -> None:
        super().__init__(message)
        self.result = result
