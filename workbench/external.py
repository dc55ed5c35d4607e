"""ExternalExperiment: load a service the workbench did not start, scrape its /metrics, store the run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench._errors import InputError
from workbench._secrets import mask_url
from workbench.load import Generators, Load, LoadPlan
from workbench.load._plan import _resolve
from workbench.monitor import Monitor
from workbench.recording import Recording
from workbench.run import RunResult
from workbench.store import Store, new_run_id

TARGET = "external"


# An external target's load unless told otherwise: GET of its root.
EXTERNAL_LOAD = Load(path="/")


@dataclass(frozen=True, init=False)
class ExternalExperiment:
    """One point to measure on a running service at target_url (e.g. a fleet behind a balancer).

    The load goes to target_url + load.path; Load's fields may also be given by keyword, over
    `load`'s (or EXTERNAL_LOAD's).
    """

    target_url: str
    metrics_url: str | None = None
    load: Load = EXTERNAL_LOAD
    transport: str = "raw"
    allow_remote: bool = False
    cluster: object = field(default=None, compare=False)
    # The target's process ids when it runs on this machine: its CPU per request is then measured.
    pids: tuple[int, ...] = ()
    name: str = ""
    labels: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        target_url: str,
        metrics_url: str | None = None,
        load: Load | None = None,
        *,
        transport: str = "raw",
        allow_remote: bool = False,
        cluster: object = None,
        pids: tuple[int, ...] = (),
        name: str = "",
        labels: dict[str, Any] | None = None,
        **shape: Any,
    ) -> None:
        if not isinstance(target_url, str) or not target_url.startswith(("http://", "https://")):
            raise InputError("target_url", f"must be an http(s):// URL, got {target_url!r}")
        if metrics_url is not None and (
            not isinstance(metrics_url, str) or not metrics_url.startswith(("http://", "https://"))
        ):
            raise InputError(
                "metrics_url", f"must be an http(s):// URL or None, got {metrics_url!r}"
            )
        if load is not None and not isinstance(load, Load):
            raise InputError("load", f"must be a Load, got {load!r}")
        if not isinstance(pids, tuple | list) or not all(
            isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 for pid in pids
        ):
            raise InputError("pids", f"must be a tuple of process ids, got {pids!r}")
        for key, value in (
            ("target_url", target_url), ("metrics_url", metrics_url),
            ("load", (load or EXTERNAL_LOAD).replace(**shape)), ("transport", transport),
            ("allow_remote", allow_remote), ("cluster", cluster), ("pids", tuple(pids)),
            ("name", name), ("labels", dict(labels or {})),
        ):  # fmt: skip
            object.__setattr__(self, key, value)

    @property
    def url(self) -> str:
        """The URL the load goes to."""
        return self.target_url.rstrip("/") + self.load.path

    def target(self) -> dict[str, Any]:
        """What is recorded instead of service settings: the run's target is external."""
        return {
            "target": TARGET,
            "target_url": mask_url(self.target_url),
            "metrics_url": mask_url(self.metrics_url) if self.metrics_url else None,
        }

    def profile(self, load: Load | None = None) -> dict[str, Any]:
        """The load profile (this point's, or `load`) as a JSON-able dict."""
        return {
            **(load or self.load).to_dict(),
            "transport": self.transport,
            "cluster": _cluster_name(self.cluster),
        }

    def plan(self, *, progress: bool = True, load: Load | None = None) -> LoadPlan:
        """The load of this point (or `load`) bound to the target and checked (loopback unless
        allow_remote); start nothing."""
        return LoadPlan.build(
            self.target_url, load or self.load, transport=self.transport,
            allow_remote=self.allow_remote, progress=progress, cluster=self.cluster is not None,
        )  # fmt: skip

    def check(self) -> str | None:
        """Validate the load and the metrics URL (loopback unless allow_remote); start nothing.

        The address metrics_url's host resolved to and was checked at: scrapes connect there.
        """
        self.plan(progress=False)
        return self._metrics_address()

    def _metrics_address(self) -> str | None:
        if self.metrics_url is None:
            return None
        try:
            _, address, _ = _resolve(
                self.metrics_url, allow_remote=self.allow_remote, transport="httpx"
            )
        except InputError as exc:
            raise InputError("metrics_url", exc.reason) from None
        return address

    def run(self, *, store: Store | None = None, progress: bool = True) -> RunResult:
        """Load the target, scrape its metrics, attribute and store the run.

        The same pipeline as a bundled Experiment's: Ctrl-C or SIGTERM stores what was measured,
        marked interrupted, then raises KeyboardInterrupt (LoadInterrupted once the load began).
        """
        load = self.load.seeded()  # the run's seed, recorded
        plan = self.plan(progress=progress, load=load)
        metrics_address = self._metrics_address()
        record = Recording(
            new_run_id(self.name or f"external{load.path}"),
            store if store is not None else Store(),
            name=self.name, labels=self.labels, settings=self.target(),
            profile=self.profile(load),
            extra={"target": TARGET},
        )  # fmt: skip
        # Local generators are watched for their CPU (a cluster's run elsewhere); the service only
        # when its pids are given, as it may run on another host.
        generators = Generators() if self.cluster is None else None
        targets = list(self.pids)

        def pids() -> dict[str, list[int]]:
            named = {"service": targets} if targets else {}
            return {**named, **({"generator": generators.pids()} if generators is not None else {})}

        try:
            with record.outcome():
                if generators is not None:
                    generators.prepare(plan.processes)
                record.sample(
                    Monitor(
                        metrics_url=self.metrics_url,
                        processes=pids,
                        metrics_address=metrics_address,
                    )
                )
                if generators is not None:
                    record.run_load(plan, generators=generators)
                else:
                    record.run_load(plan, cluster=self.cluster)
        finally:
            server = record.stop_sampling()
            if generators is not None:
                generators.close()
            # this machine's CPU is the generator's, not the service's
            server = server.rename(columns={"machine_cpu_pct": "generator_machine_cpu_pct"})
            result = record.save(server, settings=None)
        return result


def _cluster_name(cluster: object) -> str | None:
    """The scheduler address of a cluster given as an address, Client or Cluster."""
    if cluster is None or isinstance(cluster, str):
        return cluster
    address = getattr(cluster, "scheduler_address", None)  # LocalCluster
    if address is None:
        address = getattr(getattr(cluster, "scheduler", None), "address", None)  # Client
    return str(address or cluster)
