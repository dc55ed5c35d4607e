"""Experiment: service settings + scenario + load profile → one measured, stored RunResult."""

from __future__ import annotations

import dataclasses
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.settings import ServiceSettings
from workbench import _process
from workbench._errors import InputError, positive_float, positive_int
from workbench._net import free_port
from workbench.launcher import ServiceProcess
from workbench.load import (
    Generators,
    LoadPlan,
    Scenario,
)
from workbench.monitor import Monitor
from workbench.recording import Recording
from workbench.run import RunResult, RunStatus
from workbench.stack import Stack
from workbench.store import Store, new_run_id

SERVICE_LOG_TAIL = 40  # lines of a dead service's log kept in the run's manifest
# The load's shape: the fields of Experiment and ExternalExperiment that LoadPlan.build takes as is.
SHAPE = ("connections", "duration", "rate", "arrival", "warmup", "processes")


@dataclass(frozen=True)
class Experiment:
    """One point to measure: the service's settings and the load to put on it."""

    settings: ServiceSettings = field(default_factory=ServiceSettings.optimized)
    path: str = "/users/{id}"
    connections: int = 64
    duration: float = 5.0
    rate: float | None = None
    arrival: str = "constant"
    warmup: float = 1.0
    processes: int | None = None
    # Which ids `{id}` takes: uniform over the seeded users, or zipf (a few hot ids, as caches see).
    ids: str = "uniform"
    zipf_s: float = 1.1
    # None: a fresh seed per run (recorded in the manifest), so runs do not replay each other's ids
    # into warm caches; an int repeats a run's ids exactly.
    seed: int | None = None
    name: str = ""
    labels: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.settings, ServiceSettings):
            raise InputError("settings", f"must be a ServiceSettings, got {self.settings!r}")
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise InputError("path", f"must start with '/', got {self.path!r}")
        positive_int("connections", self.connections)
        positive_float("duration", self.duration)
        positive_float("warmup", self.warmup, strict=False)
        if self.rate is not None:
            positive_float("rate", self.rate)
        self.scenario(id_max=1, seed=0)  # validates ids, zipf_s and seed

    def scenario(self, *, id_max: int, seed: int | None = None) -> Scenario:
        """The requests of this point: GET of `path`, `{id}` drawn over 1..id_max."""
        if seed is None:
            seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**31)
        return dataclasses.replace(
            Scenario.default(self.path, id_max=id_max),
            ids=self.ids,
            zipf_s=self.zipf_s,
            seed=seed,
        )

    def profile(self) -> dict[str, Any]:
        """The load profile as a JSON-able dict."""
        return {
            **load_profile(self),
            "ids": self.ids,
            "zipf_s": self.zipf_s if self.ids == "zipf" else None,
            "seed": self.seed,
        }

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
        scenario = self.scenario(id_max=stack.users)
        profile = {**self.profile(), "seed": scenario.seed}
        record = Recording(
            new_run_id(self.name or self.path),
            store if store is not None else Store(),
            name=self.name, labels=self.labels, settings=self.settings.to_dict(), profile=profile,
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
                plan = LoadPlan.build(
                    svc.url + self.path, **shape(self), scenario=scenario, progress=progress
                )
                # The load's worker processes start while the service boots (each takes most of
                # a second to import), so that neither waits for the other.
                generators.prepare(plan.processes)
                if own and svc.proc is None:
                    svc.start()
                timings["service_start_s"] = time.monotonic() - t0
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
            server = record.stop_sampling()
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

    def __init__(self) -> None:
        self.generators = Generators()
        self._stopping: list[threading.Thread] = []
        # Called when a run's load has ended (its results not yet sampled and stored).
        self.on_load_end: Callable[[], None] | None = None

    def service_for(
        self, settings: ServiceSettings, stack: Stack, *, fresh: bool = False
    ) -> ServiceProcess | None:
        """A running service the next run may measure (None: it starts its own)."""
        return None

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


# What an Experiment's load is made of (its other fields: settings, name, labels).
LOAD_FIELDS = frozenset({"path", *SHAPE, "ids", "zipf_s", "seed"})


def study_load(
    experiment: Experiment | None, defaults: Mapping[str, Any], load: Mapping[str, Any]
) -> Experiment:
    """The load of a study (capacity search, ladder, tuning), declared once as an Experiment.

    experiment: the Experiment whose load every run repeats (settings are the study's to set);
    load: Experiment's load fields by keyword (path, connections, duration, ids...), over
    experiment or else over the study's defaults. InputError names a keyword that is no load field.
    """
    unknown = sorted(set(load) - LOAD_FIELDS)
    if unknown:
        raise InputError(
            unknown[0], f"is no load option; the load's are {', '.join(sorted(LOAD_FIELDS))}"
        )
    if experiment is not None:
        if not isinstance(experiment, Experiment):
            raise InputError("experiment", f"must be an Experiment, got {experiment!r}")
        return dataclasses.replace(experiment, **load)
    return Experiment(**{**defaults, **load})


def shape(point: Any) -> dict[str, Any]:
    """The load shape of a point (bundled or external): LoadPlan.build's options of that name."""
    return {name: getattr(point, name) for name in SHAPE}


def load_profile(point: Any) -> dict[str, Any]:
    """The load profile of a run (bundled or external) as a JSON-able dict."""
    return {
        "path": point.path,
        **shape(point),
        "arrival": point.arrival if point.rate else None,
    }
