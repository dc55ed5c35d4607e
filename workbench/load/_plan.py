"""The plan of a load: target, profile, scenario and how the work splits across generators."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from workbench._errors import InputError, allowed, positive_float, positive_int
from workbench._secrets import mask_url
from workbench.load._load import Load
from workbench.load._profile import LoadProfile, default_processes, split_evenly
from workbench.load._scenario import Scenario
from workbench.load._transport import TRANSPORTS

MAX_PROCESSES = 8
MAX_DRAIN_S = 2.0  # how long in-flight requests may finish after the measured window
DEADLINE_MARGIN_S = 15.0
# uvicorn's and gunicorn's keep-alive timeout: a connection idle longer may be closed under us
KEEPALIVE_IDLE_S = 5.0


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker process needs (picklable)."""

    index: int
    workers: int
    base_url: str
    host: str
    port: int
    connections: int
    profile: LoadProfile
    scenario: Scenario
    timeout: float
    transport: str
    drain: float
    keepalive_idle: float = KEEPALIVE_IDLE_S
    seed: int = 0  # the run's (its scenario's): ids drawn and arrivals differ run to run
    steady_warmup: bool = False


def _resolve(url: str, *, allow_remote: bool, transport: str) -> tuple[httpx.URL, str, int]:
    """Parse the URL, resolve its host, and refuse non-loopback targets unless allowed."""
    if not isinstance(url, str) or not url:
        raise InputError("url", f"must be an http:// URL, got {url!r}")
    try:
        parsed = httpx.URL(url)
    except Exception:
        raise InputError("url", f"cannot parse {url!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError("url", f"must be an absolute http:// or https:// URL, got {url!r}")
    if parsed.scheme == "https" and transport == "raw":
        raise InputError(
            "transport", "'raw' speaks plain http only; use transport='httpx' for https"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InputError("url", f"cannot resolve host {parsed.host!r}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote and not allow_remote:
        raise InputError(
            "url",
            f"{parsed.host!r} resolves to {remote[0]}, not loopback (127.0.0.1, ::1, localhost); "
            "pass allow_remote=True (--allow-remote) to load a remote host",
        )
    ipv4 = [a for a in addresses if ":" not in a]
    return parsed, (ipv4 or addresses)[0], port


@dataclass(frozen=True)
class LoadPlan:
    """A Load bound to its target and checked: the target, profile, requests and generators.

    Build one with LoadPlan.build(url, load) or LoadPlan.build(url, **options); run_load,
    Experiment, external runs and the CLI take it, so that a load is planned (and its target
    resolved) once.
    """

    url: str  # as shown: credentials masked
    base_url: str
    host: str  # the address the name resolved to when checked: connections go there
    port: int
    profile: LoadProfile
    scenario: Scenario
    processes: int
    timeout: float = 10.0
    transport: str = "raw"
    progress: bool = True
    allow_remote: bool = False
    # seconds a connection may sit idle and still be reused (the target's keep-alive timeout)
    keepalive_idle: float = KEEPALIVE_IDLE_S
    asked_processes: int | None = None  # as given: None lets a Dask cluster choose
    # End the warm-up as soon as latency is steady, profile.warmup being the cap (local runs).
    steady_warmup: bool = False

    @classmethod
    def build(
        cls,
        url: str,
        load: Load | None = None,
        *,
        id_max: int | None = None,
        timeout: float = 10.0,
        transport: str = "raw",
        allow_remote: bool = False,
        progress: bool = True,
        keepalive_idle: float = KEEPALIVE_IDLE_S,
        cluster: bool = False,
        **shape: Any,
    ) -> LoadPlan:
        """Bind a load to its target and validate every option (InputError naming the parameter).

        url: the target. With `load`, the load's path goes after the URL's (a base URL such as
        http://127.0.0.1:8000). Without, the URL's path is the load's and `shape` gives Load's
        other fields by keyword (connections, duration, rate...); with both, shape's win.
        id_max: the target's id range, for a load that sets none. Nothing starts.
        cluster: the generators run on Dask workers, whose number is checked once connected.
        """
        if transport not in TRANSPORTS:
            raise InputError(
                "transport", f"must be one of {allowed(TRANSPORTS)}, got {transport!r}"
            )
        for name, flag in (("allow_remote", allow_remote), ("progress", progress)):
            if not isinstance(flag, bool):
                raise InputError(name, f"must be True or False, got {flag!r}")
        timeout = positive_float("timeout", timeout)
        keepalive_idle = positive_float("keepalive_idle", keepalive_idle)
        parsed, host, port = _resolve(url, allow_remote=allow_remote, transport=transport)
        # httpx percent-encodes the braces of a "{id}" placeholder in the URL; undo that.
        path = parsed.raw_path.decode("ascii", "replace").replace("%7Bid%7D", "{id}") or "/"
        if load is None:
            if "path" in shape:
                raise InputError("path", "is the URL's path here; give the whole URL")
            load = Load().replace(path=path, **shape)
        elif not isinstance(load, Load):
            raise InputError("load", f"must be a Load, got {load!r}")
        else:
            load = load.replace(**shape)
            if path.rstrip("/"):  # a target under a prefix, e.g. http://lb/api
                load = dataclasses.replace(load, path=path.rstrip("/") + load.path)
            url = url.rstrip("/") + load.path
        if id_max is not None:
            id_max = positive_int("id_max", id_max)
        scenario = load.requests(id_max=id_max)
        processes = load.processes
        asked = processes
        profile = load.profile()
        if cluster:
            processes = 1  # checked against the cluster's workers once connected
        elif processes is None:
            processes = default_processes(profile.connections, os.cpu_count())
        processes = positive_int("processes", processes)
        if processes > MAX_PROCESSES:
            raise InputError("processes", f"must be at most {MAX_PROCESSES}, got {processes}")
        if processes > profile.connections:
            raise InputError(
                "processes",
                f"must be at most connections ({profile.connections}), got {processes}",
            )
        return cls(
            url=mask_url(url),  # as typed: httpx would print {id} as %7Bid%7D
            base_url=f"{parsed.scheme}://{parsed.netloc.decode('ascii')}",
            host=host,
            port=port,
            profile=profile,
            scenario=scenario,
            processes=processes,
            timeout=timeout,
            transport=transport,
            progress=progress,
            allow_remote=allow_remote,
            keepalive_idle=keepalive_idle,
            asked_processes=asked,
        )

    def quiet(self) -> LoadPlan:
        """The same load without per-second progress lines."""
        return dataclasses.replace(self, progress=False)


def plan_load(url: str, **options: Any) -> LoadPlan:
    """LoadPlan.build: validate a load's options (InputError naming the parameter); start nothing."""
    return LoadPlan.build(url, **options)


def _say(plan: LoadPlan, text: str) -> None:
    if plan.progress:
        print(text, flush=True)


def worker_specs(plan: LoadPlan) -> list[WorkerSpec]:
    """One spec per generator: the plan's connections and rate split evenly across them."""
    caps = split_evenly(plan.profile.connections, plan.processes)
    return [
        WorkerSpec(
            index=i,
            workers=plan.processes,
            base_url=plan.base_url,
            host=plan.host,
            port=plan.port,
            connections=caps[i],
            profile=plan.profile,
            scenario=plan.scenario,
            seed=plan.scenario.seed,
            timeout=plan.timeout,
            transport=plan.transport,
            drain=min(plan.timeout, MAX_DRAIN_S),
            keepalive_idle=plan.keepalive_idle,
            steady_warmup=plan.steady_warmup,
        )
        for i in range(plan.processes)
    ]
