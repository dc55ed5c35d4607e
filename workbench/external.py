"""ExternalExperiment: load a service the workbench did not start, scrape its /metrics, store the run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from workbench._errors import InputError, positive_float, positive_int
from workbench._secrets import mask_url
from workbench.experiment import assemble, load_profile, window_cpu
from workbench.fingerprint import fingerprint
from workbench.load import Generators, LoadFailed, LoadResult, plan_load, run_load
from workbench.load._plan import _resolve
from workbench.monitor import Monitor
from workbench.run import RunResult, RunStatus
from workbench.store import Store, new_run_id

TARGET = "external"


@dataclass(frozen=True)
class ExternalExperiment:
    """One point to measure on a running service at target_url (e.g. a fleet behind a balancer)."""

    target_url: str
    metrics_url: str | None = None
    path: str = "/"
    connections: int = 64
    duration: float = 5.0
    rate: float | None = None
    arrival: str = "constant"
    warmup: float = 1.0
    processes: int | None = None
    ids: int | None = None
    transport: str = "raw"
    allow_remote: bool = False
    cluster: object = field(default=None, compare=False)
    # The target's process ids when it runs on this machine: its CPU per request is then measured.
    pids: tuple[int, ...] = ()
    name: str = ""
    labels: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.target_url, str) or not self.target_url.startswith(
            ("http://", "https://")
        ):
            raise InputError("target_url", f"must be an http(s):// URL, got {self.target_url!r}")
        if self.metrics_url is not None and (
            not isinstance(self.metrics_url, str)
            or not self.metrics_url.startswith(("http://", "https://"))
        ):
            raise InputError(
                "metrics_url", f"must be an http(s):// URL or None, got {self.metrics_url!r}"
            )
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise InputError("path", f"must start with '/', got {self.path!r}")
        positive_int("connections", self.connections)
        positive_float("duration", self.duration)
        positive_float("warmup", self.warmup, strict=False)
        if self.rate is not None:
            positive_float("rate", self.rate)
        if not isinstance(self.pids, tuple | list) or not all(
            isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 for pid in self.pids
        ):
            raise InputError("pids", f"must be a tuple of process ids, got {self.pids!r}")

    @property
    def url(self) -> str:
        """The URL the load goes to."""
        return self.target_url.rstrip("/") + self.path

    def target(self) -> dict[str, Any]:
        """What is recorded instead of service settings: the run's target is external."""
        return {
            "target": TARGET,
            "target_url": mask_url(self.target_url),
            "metrics_url": mask_url(self.metrics_url) if self.metrics_url else None,
        }

    def profile(self) -> dict[str, Any]:
        """The load profile as a JSON-able dict."""
        return {
            **load_profile(self),
            "id_max": self.ids,  # here `ids` is the id range, not a distribution
            "transport": self.transport,
            "cluster": _cluster_name(self.cluster),
        }

    def check(self) -> str | None:
        """Validate the load and the metrics URL (loopback unless allow_remote); start nothing.

        The address metrics_url's host resolved to and was checked at: scrapes connect there.
        """
        plan_load(self.url, **self._load_options(progress=False, for_plan=True))
        if self.metrics_url is None:
            return None
        try:
            _, address, _ = _resolve(
                self.metrics_url, allow_remote=self.allow_remote, transport="httpx"
            )
        except InputError as exc:
            raise InputError("metrics_url", str(exc).removeprefix("url: ")) from None
        return address

    def run(self, *, store: Store | None = None, progress: bool = True) -> RunResult:
        """Load the target, scrape its metrics, attribute and store the run."""
        metrics_address = self.check()
        run_id = new_run_id(self.name or f"external{self.path}")
        store = store if store is not None else Store()
        manifest: dict[str, Any] = {
            "run_id": run_id,
            "name": self.name,
            "labels": self.labels,
            "target": TARGET,
            "settings": self.target(),
            "profile": self.profile(),
            "environment": fingerprint(),
            "started_at": datetime.now(UTC).isoformat(),
            "status": RunStatus.RUNNING,
        }
        load: LoadResult | None = None
        monitor: Monitor | None = None
        status = RunStatus.CRASHED
        timings: dict[str, float] = {}
        # Local generators are watched for their CPU (a cluster's run elsewhere); the service only
        # when its pids are given, as it may run on another host.
        generators = Generators() if self.cluster is None else None
        targets = list(self.pids)

        def pids() -> dict[str, list[int]]:
            named = {"service": targets} if targets else {}
            return {**named, **({"generator": generators.pids()} if generators is not None else {})}

        try:
            if generators is not None:
                generators.prepare(
                    plan_load(
                        self.url, **self._load_options(progress=False, for_plan=True)
                    ).processes
                )
            monitor = Monitor(
                metrics_url=self.metrics_url, processes=pids, metrics_address=metrics_address
            ).start()
            t0 = time.monotonic()
            load = run_load(
                self.url, generators=generators, **self._load_options(progress=progress)
            )
            timings["load_s"] = time.monotonic() - t0
            status = RunStatus.FINISHED
        except LoadFailed as exc:  # a load worker died: keep what was measured, stored crashed
            load = exc.result
            manifest["load_failure"] = str(exc)
            raise
        except KeyboardInterrupt:
            status = RunStatus.INTERRUPTED
            raise
        finally:
            server = monitor.stop() if monitor is not None else pd.DataFrame()
            if generators is not None:
                generators.close()
            cpu = window_cpu(monitor, load)
            manifest.update(
                status=status, finished_at=datetime.now(UTC).isoformat(), timings=timings
            )
            if load is not None and load.workers:
                manifest["generator"] = {
                    "workers": list(load.workers),
                    "clock_skew_ms": load.clock_skew_ms,
                }
            # this machine's CPU is the generator's, not the service's
            server = server.rename(columns={"machine_cpu_pct": "generator_machine_cpu_pct"})
            result = assemble(
                run_id, manifest, name=self.name, labels=self.labels, described=self.target(),
                profile=self.profile(), load=load, server=server, settings=None,
                cpu_seconds=cpu,
            )  # fmt: skip
            store.save(result)
        return result

    def _load_options(self, *, progress: bool, for_plan: bool = False) -> dict[str, Any]:
        options: dict[str, Any] = {
            "connections": self.connections,
            "duration": self.duration,
            "rate": self.rate,
            "arrival": self.arrival,
            "warmup": self.warmup,
            "processes": None if for_plan and self.cluster is not None else self.processes,
            "ids": self.ids,
            "transport": self.transport,
            "allow_remote": self.allow_remote,
            "progress": progress,
        }
        if not for_plan:
            options["cluster"] = self.cluster
        return options


def _cluster_name(cluster: object) -> str | None:
    """The scheduler address of a cluster given as an address, Client or Cluster."""
    if cluster is None or isinstance(cluster, str):
        return cluster
    address = getattr(cluster, "scheduler_address", None)  # LocalCluster
    if address is None:
        address = getattr(getattr(cluster, "scheduler", None), "address", None)  # Client
    return str(address or cluster)
