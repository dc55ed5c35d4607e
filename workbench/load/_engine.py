"""Load engine: worker processes, each with its own uvloop loop and connections, merged results."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import ipaddress
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import socket
import ssl
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from workbench import hdr as hist
from workbench._aio import close_loop
from workbench._errors import InputError, allowed, positive_float, positive_int
from workbench._secrets import mask_url
from workbench.load._profile import LoadProfile, default_processes, split_evenly
from workbench.load._result import ERROR_CLASSES, LoadFailed, LoadInterrupted, LoadResult
from workbench.load._scenario import DEFAULT_ID_MAX, Scenario
from workbench.load._timer import Waker
from workbench.load._transport import (
    HTTPX_CEILING_RPS,
    TRANSPORTS,
    HttpxUser,
    RawConnection,
    connect_raw,
    make_httpx_client,
    pin_request,
)

TRANSPORT_FAILURES = ("timeout", "connect", "reset", "other")
MAX_PROCESSES = 8
BACKLOG_MAX = 200_000  # queued intended send times per worker before arrivals are dropped
CONNECT_BACKOFF_S = 0.05
SWEEP_INTERVAL_S = 0.1
MAX_DRAIN_S = 2.0  # how long in-flight requests may finish after the measured window
READY_TIMEOUT_S = 60.0
DEADLINE_MARGIN_S = 15.0
SEND_LAG_LIMIT_MS = 10.0
RATE_SHORTFALL = 0.95
CPU_PINNED = 0.95
CPU_BUSY = 0.8  # worth naming as a cause when the rate falls short
START_DELAY_S = 0.1
IDLE_TIMEOUT_S = 5.0  # how long a pooled worker may take to close its connections after a run


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
    seed: int = 0


# ----------------------------------------------------------------------------- worker side


class _Driver:
    """Schedules, sends and records the requests of one worker process."""

    def __init__(self, spec: WorkerSpec, pipe: multiprocessing.connection.Connection) -> None:
        self.spec = spec
        self.pipe = pipe
        self.profile = spec.profile
        self.open_loop = spec.profile.open_loop
        self.think = spec.profile.think_time
        self.raw = spec.transport == "raw"
        self.ppid = os.getppid()
        self.pool: list[Any] = []
        self.pool_i = 0
        self.conns: list[Any] = []
        self.unopened: list[Any] = []
        self.idle: list[Any] = []
        self.backlog: deque[float] = deque()
        self.busy_count = 0
        self.done = False
        self.pacing = False
        self.arrivals: Iterator[float] = iter(())
        self.next_at = math.inf
        self.waker: Waker | None = None
        self.m_start = math.inf
        self.stop_at = math.inf
        self.hard_end = math.inf
        self.n_seconds = max(1, math.ceil(spec.profile.duration - 1e-9))
        self.second = 0
        self._new_second()
        self.total_lat = hist.new_histogram()
        self.total_svc = hist.new_histogram()
        self.total_lag = hist.new_histogram()
        self.cpu_mark = (time.monotonic(), time.process_time())

    def _new_second(self) -> None:
        self.lat_d: dict[int, int] = {}
        self.svc_d: dict[int, int] = {}
        self.lag_d: dict[int, int] = {}
        self.sent = 0
        self.completed = 0
        self.late = 0
        self.err = dict.fromkeys(ERROR_CLASSES, 0)
        self.cap_waits = 0
        self.dropped = 0

    async def run(self) -> None:
        """Prepare, wait for the start time, run, drain, report."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        spec = self.spec
        self.finished: asyncio.Future[None] = loop.create_future()
        if self.raw:
            self.pool = spec.scenario.encode_pool(spec.base_url, seed=spec.seed + spec.index)
            self.conns = [RawConnection(self) for _ in range(spec.connections)]
            self._send: Callable[[Any, float], None] = self._send_raw
            # closed loop: every user connects before timing; open loop: a few, the rest on demand
            warm = self.conns if not self.open_loop else self.conns[: min(4, len(self.conns))]
            await asyncio.gather(
                *(connect_raw(c, spec.host, spec.port, timeout=spec.timeout) for c in warm),
                return_exceptions=True,
            )
        else:
            # to the address that was checked (spec.host), never to a new lookup of the name
            self.pool = [
                pin_request(r, spec.host)
                for r in spec.scenario.requests(spec.base_url, seed=spec.seed + spec.index)
            ]
            context = ssl.create_default_context()
            self.conns = [
                HttpxUser(self, make_httpx_client(timeout=spec.timeout, ssl_context=context))
                for _ in range(spec.connections)
            ]
            self._send = self._send_httpx
        self.unopened = list(reversed(self.conns))
        gc.collect()
        gc.freeze()  # the pool and connections live all run: keep them out of GC passes
        self.pipe.send(("ready", spec.index))
        if not self.pipe.poll(READY_TIMEOUT_S):
            raise TimeoutError("no start time from the parent process")
        message = self.pipe.recv()
        if message[0] != "start":
            return
        start_at = float(message[1])
        p = self.profile
        self.m_start = start_at + p.warmup
        self.stop_at = self.m_start + p.duration
        self.hard_end = self.stop_at + spec.drain
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        self.cpu_mark = (time.monotonic(), time.process_time())
        self.tick_handle = loop.call_later(
            max(0.0, self.m_start + 1 - time.monotonic()), self._tick
        )
        self.sweep_handle = loop.call_later(SWEEP_INTERVAL_S, self._sweep)
        if self.open_loop:
            self.arrivals = p.arrivals(worker=spec.index, workers=spec.workers, seed=spec.seed)
            self.pacing = True
            self.waker = Waker(loop, self._pace)
            self.next_at = self._next_arrival()
            self._pace()
        else:
            now = time.monotonic()
            while self.unopened:
                self._send(self.unopened.pop(), now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished, self.hard_end + 1.0 - time.monotonic())
        self.done = True
        if self.waker is not None:
            self.waker.close()
        self.tick_handle.cancel()
        self.sweep_handle.cancel()
        while self.second < self.n_seconds - 1:
            self._close_second()
        self._close_second()
        self.pipe.send(
            (
                "done",
                spec.index,
                {
                    "lat": hist.encode(self.total_lat),
                    "svc": hist.encode(self.total_svc),
                    "lag": hist.encode(self.total_lag),
                    "connections_used": len(self.conns) - len(self.unopened),
                },
            )
        )
        await self._close_all()

    async def _close_all(self) -> None:
        for conn in self.conns:
            if isinstance(conn, RawConnection):
                conn.drop(abort=True)
            else:
                if conn.task is not None:
                    conn.task.cancel()
                with contextlib.suppress(Exception):  # closing is best effort at the end
                    await asyncio.wait_for(conn.client.aclose(), 1.0)

    # -- scheduling

    def _next_arrival(self) -> float:
        try:
            return self.m_start + next(self.arrivals)
        except StopIteration:
            return math.inf

    def _pace(self) -> None:
        if self.done:
            return
        now = time.monotonic()
        nxt = self.next_at
        while nxt <= now:
            self._issue(nxt)
            nxt = self._next_arrival()
        self.next_at = nxt
        if nxt == math.inf:
            self.pacing = False
            self._maybe_finish()
            return
        assert self.waker is not None
        self.waker.at(nxt)

    def _issue(self, intended: float) -> None:
        if self.idle:
            self._send(self.idle.pop(), intended)
        elif self.unopened:
            self._send(self.unopened.pop(), intended)
        elif len(self.backlog) < BACKLOG_MAX:
            self.backlog.append(intended)
            if intended >= self.m_start:
                self.cap_waits += 1
        elif intended >= self.m_start:
            self.dropped += 1

    def _next(self, conn: Any, now: float) -> None:
        if self.done:
            return
        if self.open_loop:
            if self.backlog:
                self._send(conn, self.backlog.popleft())
                return
            self.idle.append(conn)
            if not self.pacing and self.busy_count == 0:
                self._finish()
        elif now < self.stop_at:
            if self.think:
                self.loop.call_later(self.think, self._think_done, conn)
            else:
                self._send(conn, now)
        elif self.busy_count == 0:
            self._finish()

    def _think_done(self, conn: Any) -> None:
        now = time.monotonic()
        if not self.done and now < self.stop_at:
            self._send(conn, now)
        else:
            self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.busy_count == 0 and not self.backlog and time.monotonic() >= self.stop_at:
            self._finish()

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    # -- sending

    def _send_raw(self, conn: RawConnection, intended: float) -> None:
        conn.busy = True
        conn.intended = intended
        self.busy_count += 1
        i = self.pool_i
        data = self.pool[i]
        self.pool_i = i + 1 if i + 1 < len(self.pool) else 0
        transport = conn.transport
        if transport is None:
            self.loop.create_task(self._connect_send(conn, data))
            return
        now = time.monotonic()
        conn.sent = now
        transport.write(data)
        if intended >= self.m_start:
            self.sent += 1
            if self.open_loop:
                lag = int((now - intended) * 1e6)
                d = self.lag_d
                d[lag] = d.get(lag, 0) + 1

    async def _connect_send(self, conn: RawConnection, data: bytes) -> None:
        try:
            await connect_raw(conn, self.spec.host, self.spec.port, timeout=self.spec.timeout)
        except Exception:
            await asyncio.sleep(CONNECT_BACKOFF_S)
            if conn.busy:
                conn.busy = False
                self.on_failure(conn, "connect")
            return
        transport = conn.transport
        if not conn.busy or self.done or transport is None:
            return
        now = time.monotonic()
        conn.sent = now
        transport.write(data)
        if conn.intended >= self.m_start:
            self.sent += 1
            if self.open_loop:
                lag = int((now - conn.intended) * 1e6)
                self.lag_d[lag] = self.lag_d.get(lag, 0) + 1

    def _send_httpx(self, user: HttpxUser, intended: float) -> None:
        user.busy = True
        user.intended = intended
        self.busy_count += 1
        i = self.pool_i
        request = self.pool[i]
        self.pool_i = i + 1 if i + 1 < len(self.pool) else 0
        now = time.monotonic()
        user.sent = now
        user.start(request)
        if intended >= self.m_start:
            self.sent += 1
            if self.open_loop:
                lag = int((now - intended) * 1e6)
                self.lag_d[lag] = self.lag_d.get(lag, 0) + 1

    # -- outcomes (called by the connections)

    def on_response(self, conn: Any, status: int) -> None:
        """Record a complete response and give the connection its next request."""
        now = time.monotonic()
        self.busy_count -= 1
        intended = conn.intended
        if intended >= self.m_start:
            v = int((now - intended) * 1e6)
            d = self.lat_d
            d[v] = d.get(v, 0) + 1
            if self.open_loop:
                v = int((now - conn.sent) * 1e6)
                d = self.svc_d
                d[v] = d.get(v, 0) + 1
            if now < self.stop_at:
                self.completed += 1
            else:
                self.late += 1  # intended in the window, answered during the drain
            if status >= 400:
                self.err["status_5xx" if status >= 500 else "status_4xx"] += 1
        self._next(conn, now)

    def on_failure(self, conn: Any, kind: str) -> None:
        """Count a request that got no response, in its error class."""
        self.busy_count -= 1
        if conn.intended >= self.m_start:
            self.err[kind] += 1
        self._next(conn, time.monotonic())

    # -- housekeeping

    def _sweep(self) -> None:
        if self.done:
            return
        now = time.monotonic()
        if os.getppid() != self.ppid or now >= self.hard_end:
            self._finish()
            return
        if self.raw:
            limit = self.spec.timeout
            for conn in self.conns:
                if conn.busy and conn.transport is not None and now - conn.sent > limit:
                    conn.busy = False
                    conn.drop(abort=True)
                    self.on_failure(conn, "timeout")
        if now >= self.stop_at:
            self._maybe_finish()
        self.sweep_handle = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _tick(self) -> None:
        if self.done or self.second >= self.n_seconds - 1:
            return  # the last second closes when the run finishes, drain included
        self._close_second()
        if self.second < self.n_seconds - 1:
            delay = self.m_start + self.second + 1 - time.monotonic()
            self.tick_handle = self.loop.call_later(max(0.0, delay), self._tick)

    def _close_second(self) -> None:
        now, cpu = time.monotonic(), time.process_time()
        wall = now - self.cpu_mark[0]
        cpu_frac = (cpu - self.cpu_mark[1]) / wall if wall > 0 else 0.0
        self.cpu_mark = (now, cpu)
        sec_lat = hist.new_histogram()
        hist.record_counts(sec_lat, self.lat_d)
        self.total_lat.add(sec_lat)
        if self.open_loop:
            hist.record_counts(self.total_svc, self.svc_d)
        else:
            self.total_svc.add(sec_lat)
        sec_lag = hist.new_histogram()
        hist.record_counts(sec_lag, self.lag_d)
        self.total_lag.add(sec_lag)
        last = self.second >= self.n_seconds - 1
        length = self.profile.duration - self.second if last else 1.0
        row = {
            "second": self.second,
            "length": length,
            "sent": self.sent,
            "completed": self.completed,
            "late": self.late,
            "cap_waits": self.cap_waits,
            "dropped": self.dropped,
            "cpu": cpu_frac,
            "lat": hist.encode(sec_lat),
            "lag": hist.encode(sec_lag),
            **self.err,
        }
        self.pipe.send(("second", self.spec.index, row))
        self.second += 1
        self._new_second()


def _worker_main(spec: WorkerSpec | None, pipe: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process: run the driver on a fresh uvloop loop.

    A pooled worker (spec None) imports everything first, then runs one spec after another as
    ("spec", spec) messages come, answering ("idle", index, None) after each; it exits on EOF.
    """
    # Ctrl-C reaches the whole process group; only the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import uvloop

    pooled = spec is None
    try:
        while True:
            if spec is None:
                try:
                    message = pipe.recv()  # EOF when the parent closes its end or dies
                except (EOFError, OSError):
                    return
                if message[0] != "spec":
                    return
                spec = message[1]
                assert isinstance(spec, WorkerSpec)
            if not _drive(spec, pipe, uvloop.new_event_loop()) or not pooled:
                return
            pipe.send(("idle", spec.index, None))
            gc.unfreeze()  # the last run's pool and connections are garbage now: collect them
            gc.collect()  # while the parent sets up the next run
            spec = None
    except OSError:
        return  # the parent went away
    finally:
        pipe.close()


def _drive(spec: WorkerSpec, pipe: multiprocessing.connection.Connection, loop: Any) -> bool:
    """Run one spec's driver on loop, then close it; False when it failed (the parent is told)."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_Driver(spec, pipe).run())
        return True
    except BaseException:
        with contextlib.suppress(OSError):
            pipe.send(("error", spec.index, traceback.format_exc()))
        return False
    finally:
        close_loop(loop)


# ----------------------------------------------------------------------------- parent side


@dataclass(frozen=True)
class _Plan:
    """A validated run: target, profile, scenario and how work splits across processes."""

    url: str
    base_url: str
    host: str
    port: int
    profile: LoadProfile
    scenario: Scenario
    processes: int
    timeout: float
    transport: str
    progress: bool


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


def plan_load(
    url: str,
    *,
    connections: int = 64,
    duration: float = 10.0,
    rate: float | None = None,
    arrival: str = "constant",
    warmup: float = 1.0,
    processes: int | None = None,
    scenario: Scenario | str | Path | None = None,
    ids: int | None = None,
    stages: Sequence[tuple[float, float]] | None = None,
    think_time: float = 0.0,
    timeout: float = 10.0,
    transport: str = "raw",
    allow_remote: bool = False,
    progress: bool = True,
) -> _Plan:
    """Validate every option of run_load (InputError naming the parameter); start nothing."""
    if transport not in TRANSPORTS:
        raise InputError("transport", f"must be one of {allowed(TRANSPORTS)}, got {transport!r}")
    for name, flag in (("allow_remote", allow_remote), ("progress", progress)):
        if not isinstance(flag, bool):
            raise InputError(name, f"must be True or False, got {flag!r}")
    profile = LoadProfile(
        connections=connections,
        duration=duration,
        warmup=warmup,
        rate=rate,
        arrival=arrival,
        stages=tuple(stages or ()),  # type: ignore[arg-type]
        think_time=think_time,
    )
    timeout = positive_float("timeout", timeout)
    parsed, host, port = _resolve(url, allow_remote=allow_remote, transport=transport)
    if ids is not None:
        ids = positive_int("ids", ids)
    if scenario is None:
        # httpx percent-encodes the braces of a "{id}" placeholder in the URL; undo that.
        path = parsed.raw_path.decode("ascii", "replace").replace("%7Bid%7D", "{id}") or "/"
        # A fresh seed per run, like wrk's scripts: back-to-back runs must not replay the same
        # ids into caches the previous run warmed (a scenario given explicitly keeps its seed).
        scenario = dataclasses.replace(
            Scenario.default(path, id_max=ids or DEFAULT_ID_MAX),
            seed=random.SystemRandom().randrange(2**31),
        )
    elif isinstance(scenario, str | Path):
        scenario = Scenario.from_file(scenario)
    elif not isinstance(scenario, Scenario):
        raise InputError(
            "scenario", f"must be a Scenario or a path to a JSON file, got {scenario!r}"
        )
    if processes is None:
        processes = default_processes(profile.connections, os.cpu_count())
    processes = positive_int("processes", processes)
    if processes > MAX_PROCESSES:
        raise InputError("processes", f"must be at most {MAX_PROCESSES}, got {processes}")
    if processes > profile.connections:
        raise InputError(
            "processes", f"must be at most connections ({profile.connections}), got {processes}"
        )
    base_url = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
    return _Plan(
        url=mask_url(str(parsed)),
        base_url=base_url,
        host=host,
        port=port,
        profile=profile,
        scenario=scenario,
        processes=processes,
        timeout=timeout,
        transport=transport,
        progress=progress,
    )


def run_load(
    url: str,
    *,
    connections: int = 64,
    duration: float = 10.0,
    rate: float | None = None,
    arrival: str = "constant",
    warmup: float = 1.0,
    processes: int | None = None,
    scenario: Scenario | str | Path | None = None,
    ids: int | None = None,
    stages: Sequence[tuple[float, float]] | None = None,
    think_time: float = 0.0,
    timeout: float = 10.0,
    transport: str = "raw",
    allow_remote: bool = False,
    progress: bool = True,
    cluster: object = None,
    generators: Generators | None = None,
) -> LoadResult:
    """Load an HTTP service (on Dask workers when cluster is given); safe inside a running event loop.

    generators: a pool of worker processes (Generators) to use, and give back, instead of new ones.
    """
    if cluster is not None:
        from workbench.load._distributed import check_cluster

        check_cluster(cluster)
        if generators is not None:
            raise InputError("generators", "are local processes; a cluster run starts its own")
    if generators is not None and not isinstance(generators, Generators):
        raise InputError("generators", f"must be a Generators, got {generators!r}")
    plan = plan_load(
        url,
        connections=connections,
        duration=duration,
        rate=rate,
        arrival=arrival,
        warmup=warmup,
        processes=processes if cluster is None else 1,  # a cluster's generators are checked there
        scenario=scenario,
        ids=ids,
        stages=stages,
        think_time=think_time,
        timeout=timeout,
        transport=transport,
        allow_remote=allow_remote,
        progress=progress,
    )
    if allow_remote:
        print(f"allow_remote=True: loading {plan.url} (not necessarily loopback)", flush=True)
    if cluster is not None:
        from workbench.load._distributed import run_distributed

        return run_distributed(plan, cluster=cluster, processes=processes)
    return _execute(plan, generators)


def _say(plan: _Plan, text: str) -> None:
    if plan.progress:
        print(text, flush=True)


def worker_specs(plan: _Plan) -> list[WorkerSpec]:
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
            timeout=plan.timeout,
            transport=plan.transport,
            drain=min(plan.timeout, MAX_DRAIN_S),
        )
        for i in range(plan.processes)
    ]


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Start spawned workers without re-running the caller's script in them.

    multiprocessing's spawn imports the parent's __main__ in every child, so a script that loads
    a service without an `if __name__ == "__main__":` guard would start its stack again in each
    load worker (and pay its imports). The workers only need this package: while a worker starts,
    __main__ shows neither a file nor a module spec, and spawn has nothing to re-import.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    names = ("__file__", "__spec__")
    saved: dict[str, Any] = {k: main.__dict__[k] for k in names if k in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        if "__spec__" in saved:
            main.__dict__["__spec__"] = None
        yield
    finally:
        main.__dict__.update(saved)


def _spawn(
    index: int,
    spec: WorkerSpec | None,
    procs: list[Any],
    pipes: list[multiprocessing.connection.Connection],
) -> None:
    """Start one worker process (spawn: nothing of this process is inherited), appending it."""
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=True)
    proc = ctx.Process(
        target=_worker_main, args=(spec, child_end), daemon=True, name=f"load-{index}"
    )
    with _main_hidden():
        proc.start()
    child_end.close()
    procs.append(proc)
    pipes.append(parent_end)


class Generators:
    """Load worker processes kept ready between runs (a sweep's points), or started ahead of one.

    Starting a worker, a fresh interpreter importing the engine, takes most of a second.
    prepare(n) starts the missing ones without waiting for them (say, while the service under test
    boots); run_load(generators=...) takes n, and gives them back when the run ended cleanly
    (otherwise it stops them). close() stops the rest; use the pool in a `with` block.
    """

    def __init__(self) -> None:
        self._procs: list[Any] = []
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._spawned = 0
        self._pids: list[int] = []  # the pool's workers at the last prepare(), idle or lent

    def __len__(self) -> int:
        return len(self._procs)

    def pids(self) -> list[int]:
        """Process ids of the workers this pool started (idle or running a load), to account CPU."""
        return list(self._pids)

    def prepare(self, processes: int) -> Generators:
        """Start workers (in the background) until `processes` are ready or coming up."""
        processes = positive_int("processes", processes)
        if processes > MAX_PROCESSES:
            raise InputError("processes", f"must be at most {MAX_PROCESSES}, got {processes}")
        for i in reversed(range(len(self._procs))):
            if not self._procs[i].is_alive():  # died while idle: replace it
                self._pipes.pop(i).close()
                _stop([self._procs.pop(i)])
        while len(self._procs) < processes:
            _spawn(self._spawned, None, self._procs, self._pipes)
            self._spawned += 1
        # Runs take workers after prepare() and give back or stop them before the next one.
        self._pids = [proc.pid for proc in self._procs]
        return self

    def take(self, processes: int) -> tuple[list[Any], list[multiprocessing.connection.Connection]]:
        """`processes` workers and their pipes, no longer in the pool (the taker stops them)."""
        self.prepare(processes)
        procs, pipes = self._procs[:processes], self._pipes[:processes]
        del self._procs[:processes], self._pipes[:processes]
        return procs, pipes

    def give_back(
        self, procs: list[Any], pipes: list[multiprocessing.connection.Connection]
    ) -> None:
        """Return idle workers to the pool."""
        self._procs.extend(procs)
        self._pipes.extend(pipes)

    def close(self) -> None:
        """Stop every worker in the pool."""
        procs, pipes = self._procs, self._pipes
        self._procs, self._pipes, self._pids = [], [], []
        for pipe in pipes:
            pipe.close()  # an idle worker sees EOF and exits
        _stop(procs)

    def __enter__(self) -> Generators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _execute(plan: _Plan, generators: Generators | None = None) -> LoadResult:
    """Start the workers (or use prestarted ones), hand them a common start time, merge results."""
    profile = plan.profile
    drain = min(plan.timeout, MAX_DRAIN_S)
    specs = worker_specs(plan)
    mode = (
        f"open loop {profile.arrival} {profile.asked_rate:,.0f} req/s (cap {profile.connections} "
        "connections)"
        if profile.open_loop
        else f"closed loop {profile.connections} connections"
    )
    _say(
        plan,
        f"load {plan.url}: {mode}, {plan.processes} process(es), {plan.transport} transport, "
        f"{profile.duration:g} s + {profile.warmup:g} s warm-up",
    )
    if plan.transport == "httpx":
        _say(
            plan,
            f"httpx transport: measured ceiling ~{HTTPX_CEILING_RPS:,.0f} req/s per process "
            "on the reference machine; above it the client is what you measure",
        )
    procs: list[Any] = []
    pipes: list[multiprocessing.connection.Connection] = []
    collector: _Collector | None = None
    try:
        if generators is not None:
            procs, pipes = generators.take(len(specs))
            for spec, pipe in zip(specs, pipes, strict=True):
                with contextlib.suppress(OSError):  # a dead worker is reported by _receive
                    pipe.send(("spec", spec))
        else:
            for spec in specs:
                _spawn(spec.index, spec, procs, pipes)
        collector = _Collector(plan, specs)
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(ready) < len(specs):
            for message in _receive(pipes, procs, deadline):
                if message[0] == "ready":
                    ready.add(message[1])
        start_at = time.monotonic() + START_DELAY_S
        # Wall-clock time of the measured window's start, to align server-side samples.
        collector.started_at = time.time() + (start_at - time.monotonic()) + profile.warmup
        for pipe in pipes:
            pipe.send(("start", start_at))
        deadline = start_at + profile.warmup + profile.duration + drain + DEADLINE_MARGIN_S
        finished: set[int] = set()
        idle: set[int] = set()
        while not collector.complete():
            for message in _receive(pipes, procs, deadline, finished):
                if message[0] == "idle":
                    idle.add(message[1])
                else:
                    collector.add(message)
        if generators is None:
            for proc in procs:
                proc.join(5.0)
        else:  # workers that close their connections in time go back to the pool
            until = time.monotonic() + IDLE_TIMEOUT_S
            while time.monotonic() < until and any(
                spec.index not in idle and not pipe.closed
                for spec, pipe in zip(specs, pipes, strict=True)
            ):
                for message in _receive(pipes, procs, deadline, finished):
                    if message[0] == "idle":
                        idle.add(message[1])
            back = [i for i, spec in enumerate(specs) if spec.index in idle]
            generators.give_back([procs[i] for i in back], [pipes[i] for i in back])
            procs = [p for i, p in enumerate(procs) if i not in back]
            pipes = [p for i, p in enumerate(pipes) if i not in back]
        return collector.result()
    except KeyboardInterrupt as exc:
        if isinstance(exc, LoadInterrupted) or collector is None:
            raise
        raise LoadInterrupted(collector.partial()) from None
    except RuntimeError as exc:  # a worker died, failed or missed its deadline
        if collector is None:
            raise
        raise LoadFailed(str(exc), collector.partial(failure=str(exc))) from exc
    finally:
        _stop(procs)
        for pipe in pipes:
            pipe.close()


def _receive(
    pipes: list[multiprocessing.connection.Connection],
    procs: list[Any],
    deadline: float,
    finished: set[int] | None = None,
) -> list[tuple[Any, ...]]:
    """Messages available from the workers within a short wait; raises on errors and deadlines."""
    if time.monotonic() > deadline:
        raise RuntimeError("load workers missed their deadline")
    messages = []
    live = [p for p in pipes if not p.closed]
    for pipe in multiprocessing.connection.wait(live, timeout=0.25):
        assert isinstance(pipe, multiprocessing.connection.Connection)
        index = pipes.index(pipe)
        try:
            message = pipe.recv()
        except EOFError:
            pipe.close()
            if finished is None or index not in finished:
                procs[index].join(1.0)
                code = procs[index].exitcode
                if code is not None and code < 0:  # killed by a signal
                    raise RuntimeError(f"load worker {index} died (signal {-code})") from None
                raise RuntimeError(
                    f"load worker {index} exited without reporting (exit code {code}); a script "
                    "that calls run_load must guard its entry point with "
                    "`if __name__ == '__main__':` (multiprocessing spawn)"
                ) from None
            continue
        if message[0] == "error":
            raise RuntimeError(f"load worker {message[1]} failed:\n{message[2]}")
        if message[0] == "done" and finished is not None:
            finished.add(index)
        messages.append(message)
    if not messages:
        dead = [
            i
            for i, p in enumerate(procs)
            if p.exitcode not in (None, 0) and i not in (finished or ())
        ]
        if dead:
            proc = procs[dead[0]]
            raise RuntimeError(f"load worker {proc.name} died (exit code {proc.exitcode})")
    return messages


def _stop(procs: list[Any]) -> None:
    """Terminate any worker still alive, then kill it; leave no orphan behind."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)


class _Collector:
    """Merges per-second rows and final histograms of the workers; prints progress."""

    def __init__(self, plan: _Plan, specs: list[WorkerSpec]) -> None:
        self.plan = plan
        self.workers = len(specs)
        self.pending: dict[int, list[dict[str, Any]]] = {}
        self.rows: list[dict[str, Any]] = []
        self.finals: dict[int, dict[str, Any]] = {}
        self.worker_requests = [0] * self.workers
        self.worker_cpu: list[list[float]] = [[] for _ in specs]
        self.totals: dict[str, float] = {}
        self.total_lag = hist.new_histogram()
        self.window_lat = hist.new_histogram()  # merged per-second latency, for a partial result
        self.started_at = 0.0

    def complete(self) -> bool:
        return len(self.finals) == self.workers

    def add(self, message: tuple[Any, ...]) -> None:
        kind, index, payload = message
        if kind == "second":
            self.worker_requests[index] += (
                payload["completed"] + payload["late"] + sum(payload[k] for k in TRANSPORT_FAILURES)
            )
            self.worker_cpu[index].append(payload["cpu"])
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
        for key in ("sent", "completed", "late", *ERROR_CLASSES, "cap_waits", "dropped"):
            row[key] = sum(p[key] for p in parts)
            self.totals[key] = self.totals.get(key, 0) + row[key]
        row["errors"] = sum(row[k] for k in ERROR_CLASSES)
        row["rate"] = row["completed"] / length if length > 0 else 0.0
        profile = self.plan.profile
        row["asked_rate"] = profile.rate_at(second + length / 2) if profile.open_loop else None
        for p in (50, 95, 99):
            row[f"p{p}_ms"] = hist.percentile_ms(lat, p)
        row["send_lag_p99_ms"] = hist.percentile_ms(lag, 99) if profile.open_loop else 0.0
        row["generator_cpu_pct"] = 100.0 * max(p["cpu"] for p in parts)
        self.rows.append(row)
        if self.plan.progress:
            asked = f" (asked {row['asked_rate']:,.0f})" if profile.open_loop else ""
            p99 = row["p99_ms"]
            p99_text = "-" if math.isnan(p99) else f"{p99:.2f}"
            print(
                f"  {second + length:6.1f}s  {row['rate']:9,.0f} req/s{asked}  "
                f"errors {row['errors']:6d}  p99 {p99_text:>9} ms",
                flush=True,
            )

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
        throughput = completed / duration if duration else 0.0
        lag_p99 = hist.percentile_ms(lag, 99) if profile.open_loop else 0.0
        # a refused connection is the server's doing: it counts as offered
        offered = sent + classes["connect"]
        reason = (
            None
            if interrupted
            else self._saturation(sent=offered, throughput=throughput, lag_p99=lag_p99)
        )
        return LoadResult(
            url=plan.url,
            transport=plan.transport,
            processes=plan.processes,
            connections=profile.connections,
            arrival=profile.arrival if profile.open_loop else None,
            asked_rate=profile.asked_rate,
            duration_s=duration,
            warmup_s=profile.warmup,
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
            generator_saturated=reason is not None,
            saturation_reason=reason,
            interrupted=interrupted,
        )

    def _saturation(self, *, sent: int, throughput: float, lag_p99: float) -> str | None:
        """Why the generator, not the server, limited the run; None when it did not."""
        plan, profile = self.plan, self.plan.profile
        cpu = max((sum(c) / len(c) for c in self.worker_cpu if c), default=0.0)
        cap_waits = int(self.totals.get("cap_waits", 0))
        dropped = int(self.totals.get("dropped", 0))
        symptoms = []
        if profile.open_loop:
            asked = profile.expected_requests()
            if sent < RATE_SHORTFALL * asked:
                share = 100 * sent / asked if asked else 0.0
                symptoms.append(f"sent {sent:,} of {asked:,.0f} asked requests ({share:.0f}%)")
            if lag_p99 > SEND_LAG_LIMIT_MS:
                symptoms.append(f"send lag P99 {lag_p99:.1f} ms > {SEND_LAG_LIMIT_MS:g} ms")
        elif cpu >= CPU_PINNED:
            symptoms.append(f"closed loop with generator CPU {100 * cpu:.0f}%")
        if plan.transport == "httpx" and throughput >= 0.9 * HTTPX_CEILING_RPS * plan.processes:
            symptoms.append(
                f"httpx transport at its ceiling (~{HTTPX_CEILING_RPS:,.0f} req/s per process "
                "measured here; use transport='raw')"
            )
        if not symptoms:
            return None
        causes = []
        if cap_waits:
            causes.append(
                f"all {profile.connections} connections were busy for {cap_waits:,} requests "
                "(raise connections if the server keeps up)"
            )
        if dropped:
            causes.append(f"{dropped:,} arrivals dropped (backlog full)")
        if cpu >= CPU_BUSY:
            causes.append(f"generator CPU {100 * cpu:.0f}% of a core (add processes)")
        return "; ".join(symptoms) + (" - " + "; ".join(causes) if causes else "")
