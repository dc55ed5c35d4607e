"""Experiment: service settings + a Load → one measured, stored RunResult."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.settings import ServiceSettings
from workbench import _process
from workbench._errors import InputError
from workbench._net import free_port
from workbench.launcher import ServiceProcess
from workbench.load import Generators, Load, LoadPlan
from workbench.monitor import Monitor
from workbench.recording import Recording
from workbench.run import RunResult, RunStatus
from workbench.stack import Stack
from workbench.store import Store, new_run_id

SERVICE_LOG_TAIL = 40  # lines of a dead service's log kept in the run's manifest


@dataclass(frozen=True, init=False)
class Experiment:
    """One point to measure: the service's settings and the load to put on it.

    Experiment(settings, load=Load(connections=32, rate=500)); Load's fields may also be given
    by keyword (Experiment(settings, connections=32, rate=500)), over `load`'s.
    """

    settings: ServiceSettings = field(default_factory=ServiceSettings.optimized)
    load: Load = field(default_factory=Load)
    name: str = ""
    labels: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        settings: ServiceSettings | None = None,
        load: Load | None = None,
        *,
        name: str = "",
        labels: dict[str, Any] | None = None,
        **shape: Any,
    ) -> None:
        settings = ServiceSettings.optimized() if settings is None else settings
        if not isinstance(settings, ServiceSettings):
            raise InputError("settings", f"must be a ServiceSettings, got {settings!r}")
        if load is not None and not isinstance(load, Load):
            raise InputError("load", f"must be a Load, got {load!r}")
        object.__setattr__(self, "settings", settings)
        object.__setattr__(self, "load", (load or Load()).replace(**shape))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "labels", dict(labels or {}))

    def profile(self) -> dict[str, Any]:
        """The load profile as a JSON-able dict."""
        return self.load.to_dict()

    def run(
        self,
        stack: Stack,
        *,
        store: Store | None = None,
        progress: bool = True,
        service: ServiceProcess | None = None,
        session: Session | None = None,
        fresh_service: bool = False,
    ) -> RunResult:
        """Start the service (unless given), load it, sample the server, attribute and store the run.

        Ctrl-C or SIGTERM stops everything the run started and stores what was measured, marked
        interrupted, then raises KeyboardInterrupt (LoadInterrupted when the load had begun).
        A load worker that dies stores the partial result as crashed and raises LoadFailed; a
        service that dies stores the run as crashed, with its exit code and log tail.
        Within a Session, the load's workers are kept for the next run and the service, when the
        run finished, stops in the background (or, in a kernel's kept session, stays up for the
        next run with the same settings, unless `fresh_service`). The manifest's `service` says
        whether the run's service was started for it or had served runs before.
        """
        with _process.sigterm_interrupts():
            return self._run(
                stack, store=store, progress=progress, service=service, session=session,
                fresh_service=fresh_service,
            )  # fmt: skip

    def _run(
        self,
        stack: Stack,
        *,
        store: Store | None,
        progress: bool,
        service: ServiceProcess | None,
        session: Session | None,
        fresh_service: bool,
    ) -> RunResult:
        load = self.load.seeded()  # the run's seed, recorded
        record = Recording(
            new_run_id(self.name or load.path),
            store if store is not None else Store(),
            name=self.name, labels=self.labels, settings=self.settings.to_dict(),
            profile=load.to_dict(),
        )  # fmt: skip
        own = service is None
        if service is None and session is not None:
            service = session.service_for(self.settings, stack, fresh=fresh_service)
        svc = service or ServiceProcess(self.settings, stack)
        reused = bool(svc.served)  # measured before: its pools, caches and imports are warm
        log_mark = svc.log_size() if reused else 0
        record.manifest["service"] = {
            "reused": reused,
            "runs_before": list(svc.served),
        }
        generators = session.generators if session is not None else Generators()
        timings = record.timings
        try:
            with record.outcome():
                t0 = time.monotonic()
                if own and svc.port is None:
                    svc.port = free_port()  # the load's URL is known before the service starts
                plan = LoadPlan.build(svc.url, load, id_max=stack.users, progress=progress)
                if session is not None and session.steady_warmup:
                    plan = dataclasses.replace(plan, steady_warmup=True)
                # The load's worker processes start while the service boots (each takes most of
                # a second to import), so that neither waits for the other.
                generators.prepare(plan.processes)
                if own and svc.proc is None:
                    svc.start()
                timings["service_start_s"] = time.monotonic() - t0
                # spawn to healthy: booted by this run, ahead of it, or for an earlier one (reused)
                timings["service_boot_s"] = svc.boot_s
                if session is not None:  # e.g. how long a sweep waited for a service booted ahead
                    timings.update(session.take_timings())
                record.manifest["service"].update(
                    pid=svc.proc.pid if svc.proc is not None else None,
                    spawned_at=svc.started_at,
                )
                if session is not None:  # the previous run's service is gone before this load
                    t1 = time.monotonic()
                    session.settle()
                    timings["previous_stop_wait_s"] = time.monotonic() - t1

                def pids() -> dict[str, list[int]]:
                    return {
                        "service": svc.pids()[:1],
                        **{name: [pid] for name, pid in stack.pids().items()},
                        "generator": generators.pids(),
                    }

                record.sample(Monitor(metrics_url=svc.url + "/metrics", processes=pids))
                record.run_load(plan, generators=generators)
                if session is not None and session.on_load_end is not None:
                    session.on_load_end()  # a sweep boots its next service while this is stored
        finally:
            if session is None:
                generators.close()
            t3 = time.monotonic()
            server = record.stop_sampling()
            timings["sampling_stop_s"] = time.monotonic() - t3
            svc.served.append(record.run_id)
            # a kept service's log holds earlier runs too: this run stores its own part
            log = svc.log_since(log_mark) if isinstance(svc.log, Path) else None
            died = svc.exit_code()
            if died is not None:  # the service ended on its own: what was measured is no result
                if record.status is RunStatus.FINISHED:
                    record.status = RunStatus.CRASHED
                record.manifest["service"].update(
                    exit_code=died,
                    log_tail=_process.log_tail(log, SERVICE_LOG_TAIL) if log else "",
                )
                print(
                    f"the service died during run {record.run_id} (exit code {died}); stored as "
                    f"{record.status}, with its log's tail in the manifest",
                    file=sys.stderr,
                    flush=True,
                )
            if own and session is not None and record.status is RunStatus.FINISHED:
                session.release(svc)
            elif own:
                t2 = time.monotonic()
                svc.stop()
                timings["service_stop_s"] = time.monotonic() - t2
            result = record.save(
                server, settings=self.settings, files={"service.log": log} if log else None
            )
            if log is not None and log != svc.log:
                log.unlink(missing_ok=True)
        return result


class Session:
    """What consecutive runs (a sweep's points) share, so that a run costs little beyond its load.

    The load's worker processes stay up from one run to the next, and a finished run's service
    stops in the background while the next run's service boots; that next run's load starts only
    once the previous service is gone. Leaving the `with` block (Ctrl-C too) stops everything.
    """

    def __init__(self, *, steady_warmup: bool = False) -> None:
        self.generators = Generators()
        # each run's warm-up ends once latency is steady, its warmup seconds the cap (sweeps)
        self.steady_warmup = steady_warmup
        self._stopping: list[threading.Thread] = []
        # Called when a run's load has ended (its results not yet sampled and stored).
        self.on_load_end: Callable[[], None] | None = None
        # Timings measured for the next run outside it (a sweep's wait for its service).
        self.timings: dict[str, float] = {}

    def service_for(
        self, settings: ServiceSettings, stack: Stack, *, fresh: bool = False
    ) -> ServiceProcess | None:
        """A running service the next run may measure (None: it starts its own)."""
        return None

    def take_timings(self) -> dict[str, float]:
        """The timings measured for the next run, handed to it once."""
        timings, self.timings = self.timings, {}
        return timings

    def release(self, service: ServiceProcess) -> None:
        """A finished run's service: stopped in the background (a kept session keeps it)."""
        self.stop_later(service)

    def stop_later(self, service: ServiceProcess) -> None:
        """Stop a service in the background; settle() waits for it."""
        thread = threading.Thread(target=service.stop, name="workbench-service-stop", daemon=True)
        thread.start()
        self._stopping.append(thread)

    def settle(self) -> None:
        """Wait until every service stopping in the background is gone."""
        while self._stopping:
            self._stopping[0].join()
            self._stopping.pop(0)

    def close(self) -> None:
        """Wait for the services being stopped and stop the load workers."""
        try:
            self.settle()
        finally:
            self.generators.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def study_load(
    experiment: Experiment | None, load: Load | None, default: Load, shape: Mapping[str, Any]
) -> Experiment:
    """The load of a study (capacity search, ladder, tuning) as an Experiment whose settings the
    study sets: `experiment`'s load, else `load`, else the study's default, with `shape` (Load's
    fields by keyword) over it. InputError names a keyword that is no load field.
    """
    if experiment is not None:
        if not isinstance(experiment, Experiment):
            raise InputError("experiment", f"must be an Experiment, got {experiment!r}")
        if load is not None:
            raise InputError("load", "is the experiment's; give one or the other")
        return dataclasses.replace(experiment, load=experiment.load.replace(**shape))
    return Experiment(load=(load or default).replace(**shape))
