"""The collector: merges the generators' seconds and histograms, and diagnoses saturation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from workbench import hdr as hist
from workbench.load import progress as _progress
from workbench.load._plan import LoadPlan, WorkerSpec
from workbench.load._result import ERROR_CLASSES, Cause, LoadResult, WarmupEnd

TRANSPORT_FAILURES = ("timeout", "connect", "reset", "other")
SEND_LAG_LIMIT_MS = 10.0
RATE_SHORTFALL = 0.95
# Share of the wall time a generator ran or waited for a core (never for the server) from which
# it, not the server, sets a closed loop's pace; and from which it is named as a cause. The share
# misses the kernel's work on the generator's packets (softirq, charged to no process: heavy on
# loopback at ~90k req/s), so a generator that is the limit can read 80-90% busy: against nginx
# on this 2-core VM one run in three was 0.93 of wrk at under 90% (95-97% on quiet runs).
BUSY_LIMIT = 0.8
BUSY_CAUSE = 0.8


class _Collector:
    """Merges per-second rows and final histograms of the workers; prints progress."""

    def __init__(self, plan: LoadPlan, specs: list[WorkerSpec]) -> None:
        self.plan = plan
        self.workers = len(specs)
        self.pending: dict[int, list[dict[str, Any]]] = {}
        self.rows: list[dict[str, Any]] = []
        self.finals: dict[int, dict[str, Any]] = {}
        self.worker_requests = [0] * self.workers
        self.worker_cpu: list[list[float]] = [[] for _ in specs]
        self.worker_busy: list[list[float]] = [[] for _ in specs]  # CPU + waiting for a core
        self.profile = plan.profile
        self.totals: dict[str, float] = {}
        self.total_lag = hist.new_histogram()
        self.window_lat = hist.new_histogram()  # merged per-second latency, for a partial result
        self.started_at = 0.0
        self.measured_s = 0.0  # the seconds merged so far (the last one may be shorter)
        self.warmup_s = plan.profile.warmup  # shorter when a steady warm-up ended early
        self.warmup_end = (
            WarmupEnd.NONE
            if plan.profile.warmup <= 0
            else WarmupEnd.CAPPED
            if plan.steady_warmup
            else WarmupEnd.FIXED
        )
        self.publish = True  # tell progress listeners of each merged second

    def complete(self) -> bool:
        return len(self.finals) == self.workers

    def add(self, message: tuple[Any, ...]) -> None:
        kind, index, payload = message
        if kind == "second":
            self.worker_requests[index] += (
                payload["completed"] + payload["late"] + sum(payload[k] for k in TRANSPORT_FAILURES)
            )
            self.worker_cpu[index].append(payload["cpu"])
            self.worker_busy[index].append(min(1.0, payload["cpu"] + payload.get("wait", 0.0)))
            parts = self.pending.setdefault(payload["second"], [])
            parts.append(payload)
            if len(parts) == self.workers:
                self._merge_second(self.pending.pop(payload["second"]))
        elif kind == "done":
            self.finals[index] = payload

    def _merge_second(self, parts: list[dict[str, Any]]) -> None:
        second = parts[0]["second"]
        length = parts[0]["length"]
        lat = hist.merge(p["lat"] for p in parts)
        lag = hist.merge(p["lag"] for p in parts)
        self.window_lat.add(lat)
        self.total_lag.add(lag)
        row: dict[str, Any] = {"second": second}
        for key in ("sent", "completed", "late", *ERROR_CLASSES, "cap_waits", "dropped", "stale"):
            row[key] = sum(p[key] for p in parts)
            self.totals[key] = self.totals.get(key, 0) + row[key]
        row["errors"] = sum(row[k] for k in ERROR_CLASSES)
        row["rate"] = row["completed"] / length if length > 0 else 0.0
        profile = self.plan.profile
        row["asked_rate"] = profile.rate_at(second + length / 2) if profile.open_loop else None
        row["p50_ms"], row["p95_ms"], row["p99_ms"] = hist.percentiles_ms(lat, (50, 95, 99))
        row["send_lag_p99_ms"] = hist.percentile_ms(lag, 99) if profile.open_loop else 0.0
        row["generator_cpu_pct"] = 100.0 * max(p["cpu"] for p in parts)
        row["generator_busy_pct"] = 100.0 * max(
            min(1.0, p["cpu"] + p.get("wait", 0.0)) for p in parts
        )
        self.rows.append(row)
        self.measured_s += length
        shown = self.publish and _progress.publish(
            _progress.Second(second, profile.duration, row, so_far=self._so_far())
        )
        if self.plan.progress and not shown:  # a live view in a notebook replaces the line
            asked = f" (asked {row['asked_rate']:,.0f})" if profile.open_loop else ""
            p99 = row["p99_ms"]
            p99_text = "-" if math.isnan(p99) else f"{p99:.2f}"
            _progress.say(
                f"  {second + length:6.1f}s  {row['rate']:9,.0f} req/s{asked}  "
                f"errors {row['errors']:6d}  p99 {p99_text:>9} ms"
            )

    def _so_far(self) -> dict[str, Any]:
        """The numbers of the seconds merged so far, as the run's summary will state them."""
        measured = self.measured_s
        return {
            "measured_s": measured,
            "rate": self.totals.get("completed", 0) / measured if measured > 0 else 0.0,
            "errors": int(sum(self.totals.get(k, 0) for k in ERROR_CLASSES)),
            "p99_ms": hist.percentile_ms(self.window_lat, 99),
        }

    def partial(self, *, failure: str | None = None) -> LoadResult | None:
        """What the seconds merged so far measured (None before the first); flagged interrupted."""
        if not self.rows:
            return None
        lat = hist.encode(self.window_lat)
        # Workers send their service-time histogram only at the end: latency stands in for it.
        lag = hist.encode(self.total_lag)
        self.finals = {0: {"lat": lat, "svc": lat, "lag": lag, "connections_used": 0}}
        self.pending.clear()  # seconds not every worker reported are left out
        seconds = float(len(self.rows))  # only the last second of a full run is shorter
        return dataclasses.replace(self.result(duration=seconds, interrupted=True), failure=failure)

    def result(self, *, duration: float | None = None, interrupted: bool = False) -> LoadResult:
        plan, profile = self.plan, self.plan.profile
        duration = profile.duration if duration is None else duration
        for second in sorted(self.pending):  # a worker that skipped a row: merge what came
            self._merge_second(self.pending.pop(second))
        self.rows.sort(key=lambda r: r["second"])
        lat = hist.merge(f["lat"] for f in self.finals.values())
        svc = hist.merge(f["svc"] for f in self.finals.values())
        lag = hist.merge(f["lag"] for f in self.finals.values())
        classes = {k: int(self.totals.get(k, 0)) for k in ERROR_CLASSES}
        completed = int(self.totals.get("completed", 0))
        sent = int(self.totals.get("sent", 0))
        late = int(self.totals.get("late", 0))
        requests = completed + late + sum(classes[k] for k in TRANSPORT_FAILURES)
        # a refused connection is the server's doing: it counts as offered
        offered = sent + classes["connect"]
        lag_p99 = hist.percentile_ms(lag, 99) if profile.open_loop else 0.0
        verdict = None if interrupted else self._saturation(sent=offered, lag_p99=lag_p99)
        return LoadResult(
            url=plan.url,
            transport=plan.transport,
            processes=plan.processes,
            connections=profile.connections,
            arrival=profile.arrival if profile.open_loop else None,
            asked_rate=profile.asked_rate,
            duration_s=duration,
            warmup_s=self.warmup_s,
            warmup_end=self.warmup_end,
            started_at=self.started_at,
            requests=requests,
            completed=completed,
            late=late,
            sent=sent,
            errors=sum(classes.values()),
            error_classes=classes,
            hdr_latency=hist.encode(lat),
            hdr_service=hist.encode(svc),
            hdr_send_lag=hist.encode(lag),
            connections_used=sum(int(f["connections_used"]) for f in self.finals.values()),
            rows=tuple(self.rows),
            worker_requests=tuple(self.worker_requests),
            generator_saturated=verdict is not None,
            saturation_reason=verdict.sentence if verdict is not None else None,
            saturation_causes=verdict.causes if verdict is not None else (),
            generator_errors={"stale_connection": int(self.totals.get("stale", 0))},
            interrupted=interrupted,
        )

    def _saturation(self, *, sent: int, lag_p99: float) -> Saturation | None:
        """Why the generator, not the server, limited the run, measured; None when it did not."""
        profile = self.profile
        cpu = max((sum(c) / len(c) for c in self.worker_cpu if c), default=0.0)
        busy = max((sum(b) / len(b) for b in self.worker_busy if b), default=0.0)
        cap_waits = int(self.totals.get("cap_waits", 0))
        dropped = int(self.totals.get("dropped", 0))
        symptoms: dict[Cause, str] = {}
        if profile.open_loop:
            asked = profile.expected_requests()
            if sent < RATE_SHORTFALL * asked:
                share = 100 * sent / asked if asked else 0.0
                symptoms[Cause.RATE_SHORT] = (
                    f"sent {sent:,} of {asked:,.0f} asked requests ({share:.0f}%)"
                )
            if lag_p99 > SEND_LAG_LIMIT_MS:
                symptoms[Cause.SEND_LAG] = (
                    f"send lag P99 {lag_p99:.1f} ms > {SEND_LAG_LIMIT_MS:g} ms"
                )
        elif busy >= BUSY_LIMIT:
            # In a closed loop a generator that never waits for the server is what sets the pace,
            # whether it spent that time on a core or waiting for one.
            symptoms[Cause.GENERATOR_BUSY] = (
                f"closed loop with the generator busy {100 * busy:.0f}% of the time "
                f"(CPU {100 * cpu:.0f}%, the rest waiting for a core): it never waited for "
                "the server"
            )
        if not symptoms:
            return None
        causes: dict[Cause, str] = {}
        if cap_waits:
            causes[Cause.CONNECTIONS_BUSY] = (
                f"all {profile.connections} connections were busy for {cap_waits:,} requests "
                "(raise connections if the server keeps up)"
            )
        if dropped:
            causes[Cause.ARRIVALS_DROPPED] = f"{dropped:,} arrivals dropped (backlog full)"
        if profile.open_loop and busy >= BUSY_CAUSE:
            causes[Cause.GENERATOR_BUSY] = (
                f"generator busy {100 * busy:.0f}% of the time (CPU {100 * cpu:.0f}% of a core; "
                "add processes or free the machine)"
            )
        sentence = "; ".join(symptoms.values())
        if causes:
            sentence += " - " + "; ".join(causes.values())
        return Saturation(causes=tuple({**symptoms, **causes}), sentence=sentence)


@dataclasses.dataclass(frozen=True)
class Saturation:
    """The verdict that the generator limited a run: cause codes and the sentence that explains them."""

    causes: tuple[Cause, ...]
    sentence: str
