"""Recording: the pipeline of every stored run, bundled or external — load, sample, attribute, store."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from service.settings import ServiceSettings
from workbench import _process, anatomy, cost
from workbench.bottleneck import attribute
from workbench.fingerprint import fingerprint
from workbench.load import LoadFailed, LoadInterrupted, LoadPlan, LoadResult, progress, run_load
from workbench.monitor import Monitor
from workbench.run import RunResult, RunStatus
from workbench.store import Store


@dataclass(frozen=True)
class RunStarted:
    """A run begins (told to progress listeners, e.g. a notebook's live view, before its load)."""

    run_id: str
    name: str
    labels: Mapping[str, Any]
    rate: float | None
    duration: float


class Recording:
    """One run's pipeline, the same for bundled and external targets: load, sample, store.

    outcome() turns how the load ended into the run's status (Ctrl-C and SIGTERM: interrupted,
    with the partial result kept; a dead load worker: crashed, with what it measured); save()
    stores the run whatever happened.
    """

    def __init__(
        self,
        run_id: str,
        store: Store,
        *,
        name: str,
        labels: dict[str, Any],
        settings: dict[str, Any],
        profile: dict[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.store = store
        self.name = name
        self.labels = labels
        self.described = settings
        self.profile = profile
        self.manifest: dict[str, Any] = {
            "run_id": run_id,
            "name": name,
            "labels": labels,
            **(extra or {}),
            "settings": settings,
            "profile": profile,
            "environment": fingerprint(),
            "started_at": datetime.now(UTC).isoformat(),
            "status": RunStatus.RUNNING,
            "notebook": os.environ.get("WORKBENCH_NOTEBOOK"),
        }
        self.load: LoadResult | None = None
        self.monitor: Monitor | None = None
        self.status = RunStatus.CRASHED
        self.timings: dict[str, float] = {}
        store.begin(run_id, self.manifest)
        progress.publish(
            RunStarted(run_id, name, labels, profile.get("rate"), profile.get("duration", 0.0))
        )

    @contextlib.contextmanager
    def outcome(self) -> Iterator[None]:
        """Record how the block ended; SIGTERM inside it interrupts like Ctrl-C."""
        with _process.sigterm_interrupts():
            try:
                yield
                self.status = RunStatus.FINISHED
            except LoadInterrupted as exc:
                self.status = RunStatus.INTERRUPTED
                self.load = exc.result
                exc.run_id = self.run_id  # stored by save(), before the exception reaches a user
                raise
            except LoadFailed as exc:  # a load worker died: keep what was measured, as crashed
                self.load = exc.result
                self.manifest["load_failure"] = str(exc)
                raise
            except KeyboardInterrupt:
                self.status = RunStatus.INTERRUPTED
                raise

    def sample(self, monitor: Monitor) -> None:
        """Start sampling the server (and the processes' CPU) with monitor."""
        self.monitor = monitor.start()

    def run_load(self, plan: LoadPlan, **where: Any) -> LoadResult:
        """Run the load (where: generators or cluster), timed."""
        t0 = time.monotonic()
        self.load = run_load(plan, **where)
        self.timings["load_s"] = time.monotonic() - t0
        return self.load

    def stop_sampling(self) -> pd.DataFrame:
        """The server samples taken so far (empty when sampling never started)."""
        return self.monitor.stop() if self.monitor is not None else pd.DataFrame()

    def save(
        self,
        server: pd.DataFrame,
        *,
        settings: ServiceSettings | None,
        files: Mapping[str, Path] | None = None,
    ) -> RunResult:
        """Assemble the run from what was measured and store it."""
        load, monitor = self.load, self.monitor
        self.manifest.update(
            status=self.status, finished_at=datetime.now(UTC).isoformat(), timings=self.timings
        )
        if load is not None and load.workers:
            self.manifest["generator"] = {
                "workers": list(load.workers),
                "clock_skew_ms": load.clock_skew_ms,
            }
        result = assemble(
            self.run_id, self.manifest, name=self.name, labels=self.labels,
            described=self.described, profile=self.profile, load=load, server=server,
            settings=settings, cpu_seconds=window_cpu(monitor, load),
            snapshots=monitor.snapshots if monitor is not None else [],
        )  # fmt: skip
        self.store.save(result, files=dict(files) if files else None)
        return result


def window_cpu(monitor: Monitor | None, load: LoadResult | None) -> dict[str, float]:
    """CPU-seconds of each watched component within the load's measured window (no warm-up)."""
    if monitor is None or load is None or not load.started_at:
        return {}
    return monitor.cpu_seconds(load.started_at, load.started_at + load.duration_s)


def _align(server: pd.DataFrame, load: LoadResult | None, end_wall: float) -> pd.DataFrame:
    """Give server samples the client's `second` axis (seconds since measurement start)."""
    if server.empty or "time" not in server:
        return server
    duration = load.duration_s if load is not None else 0.0
    start = getattr(load, "started_at", None) or end_wall - duration
    aligned = server.copy()
    # A sample describes the interval since the previous one: label it by that interval's middle.
    middle = (aligned["time"] + aligned["since"]) / 2 if "since" in aligned else aligned["time"]
    aligned["second"] = (middle - start).floordiv(1.0)
    aligned = aligned[(aligned["second"] >= 0) & (aligned["second"] < max(duration, 1))]
    return aligned.groupby("second", as_index=False).mean(numeric_only=True)


SERVER_MEANS = (
    "server_rps", "service_cpu_pct", "postgres_cpu_pct", "redis_cpu_pct", "pool_wait_ms", "loop_lag_ms",
)  # fmt: skip


def assemble(
    run_id: str,
    manifest: dict[str, Any],
    *,
    name: str,
    labels: dict[str, Any],
    described: dict[str, Any],
    profile: dict[str, Any],
    load: LoadResult | None,
    server: pd.DataFrame,
    settings: ServiceSettings | None,
    snapshots: Sequence[tuple[float, anatomy.Snapshot]] = (),
    cpu_seconds: Mapping[str, float] | None = None,
) -> RunResult:
    """A RunResult from what a run measured: server samples aligned, bottleneck named, one summary row."""
    aligned = _align(server, load, time.time())
    if load is not None:  # epoch seconds of the client's second 0, to place outside events
        manifest["window_started_at"] = load.started_at
    table = anatomy.frame(
        anatomy.between(snapshots, start=load.started_at if load is not None else None)
    )
    per_request = cost.per_request(cpu_seconds or {}, load.completed if load is not None else 0)
    verdict = attribute(
        load.summary() if load is not None else {}, aligned, settings, anatomy=table,
        cpu_ms=cost.from_summary(per_request),
    )  # fmt: skip
    manifest["bottleneck"] = asdict(verdict)
    row: dict[str, Any] = {
        "run_id": run_id,
        "name": name,
        "status": manifest["status"],
        **labels,
        **described,
        **{f"load_{k}": v for k, v in profile.items()},
    }
    if load is not None:
        latency = load.percentiles_ms("latency")
        service = load.percentiles_ms("service")
        row.update(
            requests=load.requests,
            errors=load.errors,
            generator_errors=sum(load.generator_errors.values()),  # the client's own, not in errors
            error_rate=load.errors / load.requests if load.requests else 0.0,
            throughput_rps=load.throughput_rps,
            measured_s=load.duration_s,  # < load_duration when interrupted
            warmup_s=load.warmup_s,  # < load_warmup when a steady warm-up ended early
            warmup_end=str(load.warmup_end),  # steady, capped (never steady), fixed or none
            asked_rate=load.asked_rate,
            **{f"{k}_ms": v for k, v in latency.items()},
            **{f"service_{k}_ms": v for k, v in service.items()},
            generator_saturated=load.generator_saturated,
            saturation_reason=load.saturation_reason,
            saturation_causes=",".join(load.saturation_causes),
        )
        if load.workers:
            row.update(generator_workers=len(set(load.workers)), clock_skew_ms=load.clock_skew_ms)
        row.update(per_request)
    for column in SERVER_MEANS:
        if column in aligned:
            row[f"mean_{column}"] = float(aligned[column].mean())
    row["bottleneck"] = str(verdict.kind)
    for stage, ms in anatomy.stages(table)["mean_ms"].items():
        row[f"anatomy_{stage}_ms"] = float(ms)
    if anatomy.TOTAL in table.index:
        row["anatomy_total_ms"] = float(table["mean_ms"][anatomy.TOTAL])
    return RunResult(
        run_id=run_id,
        manifest=manifest,
        summary_row=row,
        client=load.series() if load is not None else pd.DataFrame(),
        server=aligned,
        hdr_latency=load.hdr_latency if load is not None else b"",
        hdr_service=load.hdr_service if load is not None else b"",
        anatomy_table=table,
    )
