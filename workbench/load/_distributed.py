"""Distributed generation: each Dask worker runs the engine's per-worker driver; the client merges."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from workbench._aio import close_loop
from workbench._errors import InputError, positive_int
from workbench.load._collector import _Collector
from workbench.load._driver import READY_TIMEOUT_S, _Driver
from workbench.load._plan import (
    DEADLINE_MARGIN_S,
    MAX_DRAIN_S,
    LoadPlan,
    WorkerSpec,
    _say,
    worker_specs,
)
from workbench.load._result import LoadResult

if TYPE_CHECKING:
    from distributed import Client

SCHEMES = ("tcp", "tls", "ws", "wss", "inproc", "ucx")
CONNECT_TIMEOUT_S = 10.0
WORKERS_TIMEOUT_S = 10.0
START_DELAY_S = 0.5  # room for the start time to reach every worker through the scheduler
CLOCK_SAMPLES = 3
LATE_START_WARN_S = 0.05
FORWARD_JOIN_S = 5.0
STOP_POLL_S = 0.25
RUN_TIMEOUT_S = 10.0  # a worker that does not answer a client.run within this is reported
_HOST_PORT = re.compile(r"[A-Za-z0-9_.\-\[\]:]+:\d+")


def check_cluster(cluster: object) -> None:
    """Refuse a `cluster` that is no scheduler address, Client or Cluster (InputError); connect to nothing."""
    from distributed import Client
    from distributed.deploy import Cluster

    if isinstance(cluster, Client | Cluster):
        if isinstance(cluster, Client) and cluster.asynchronous:
            raise InputError("cluster", "must be a synchronous distributed.Client")
        return
    if isinstance(cluster, str) and cluster:
        scheme, sep, rest = cluster.partition("://")
        if sep and scheme in SCHEMES and rest:
            return
        if not sep and _HOST_PORT.fullmatch(cluster):
            return
    raise InputError(
        "cluster",
        "must be a Dask scheduler address such as 'tcp://scheduler:8786', a distributed.Client "
        f"or a LocalCluster, got {cluster!r}",
    )


@contextlib.contextmanager
def connect(cluster: object) -> Iterator[Client]:
    """A synchronous Client for `cluster`; one made here is closed on exit, a given one is not."""
    from distributed import Client

    check_cluster(cluster)
    if isinstance(cluster, Client):
        yield cluster
        return
    try:
        client = Client(cluster, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError("cluster", f"cannot reach the Dask scheduler {cluster!r}: {exc}") from None
    with client:
        yield client


@dataclass(frozen=True)
class ClockOffset:
    """A worker's clock minus the client's (s), and the round trip that measured it."""

    offset_s: float
    rtt_s: float

    @property
    def correction_s(self) -> float:
        """What to add to a client time to get the worker's; 0 when within measurement noise."""
        return self.offset_s if abs(self.offset_s) > self.rtt_s else 0.0


def clock_offsets(
    client: Client,
    addresses: list[str],
    *,
    samples: int = CLOCK_SAMPLES,
    timeout: float = RUN_TIMEOUT_S,
) -> dict[str, ClockOffset]:
    """NTP-style offset of each worker's time.time(): the sample with the shortest round trip wins."""
    out: dict[str, ClockOffset] = {}
    for address in addresses:
        best: ClockOffset | None = None
        for _ in range(samples):
            t0 = time.time()
            try:
                remote = client.run(time.time, workers=[address], callback_timeout=timeout)[address]
            except TimeoutError:
                raise InputError(
                    "cluster", f"Dask worker {address} did not answer within {timeout:g} s"
                ) from None
            t1 = time.time()
            sample = ClockOffset(offset_s=float(remote) - (t0 + t1) / 2, rtt_s=t1 - t0)
            if best is None or sample.rtt_s < best.rtt_s:
                best = sample
        assert best is not None
        out[address] = best
    return out


@dataclass
class _TaskPipe:
    """The driver's pipe inside a Dask task: readiness and start time go through the scheduler."""

    key: str
    correction_s: float
    client: Any = None
    live: queue.SimpleQueue[tuple[Any, ...] | None] | None = None
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    start_wall: float | None = None
    late_s: float = 0.0

    def send(self, message: tuple[Any, ...]) -> None:
        from distributed import Queue

        if message[0] == "ready":
            Queue(f"{self.key}-ready", client=self.client).put(message[1])
        else:
            self.messages.append(message)  # rows and histograms go back with the task's result
            if self.live is not None:
                self.live.put(message)  # for live progress; never blocks the driver's loop

    def poll(self, timeout: float) -> bool:
        from distributed import Variable

        try:
            self.start_wall = Variable(f"{self.key}-start", client=self.client).get(timeout=timeout)
        except TimeoutError:
            return False
        return True

    def recv(self) -> tuple[Any, ...]:
        if self.start_wall is None:
            return ("abort",)
        local_wall = self.start_wall + self.correction_s
        now_wall, now = time.time(), time.monotonic()
        self.late_s = max(0.0, now_wall - local_wall)
        return ("start", now + (local_wall - now_wall))


def _forward(local: queue.SimpleQueue[tuple[Any, ...] | None], remote: Any) -> None:
    """Copy per-second rows to the client's progress queue until None (best effort)."""
    while (message := local.get()) is not None:
        with contextlib.suppress(Exception):
            remote.put(message)


def _watch(
    stop: Any, loop: asyncio.AbstractEventLoop, driver: _Driver, finished: threading.Event
) -> None:
    """End the driver's run early when the client sets the stop event (it was interrupted)."""
    while not finished.is_set():
        try:
            stopped = stop.wait(timeout=STOP_POLL_S)
        except Exception:  # the scheduler went away: the run ends by its own deadline
            return
        if stopped:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(driver._finish)
            return


def _generate(
    spec: WorkerSpec, key: str, correction_s: float, live: bool = False
) -> dict[str, Any]:
    """A Dask task: run one generator's driver on a fresh uvloop loop in this worker thread."""
    import uvloop
    from distributed import Event, Queue, get_client, get_worker

    client = get_client()  # passed explicitly: objects used from side threads need it bound
    pipe = _TaskPipe(key=key, correction_s=correction_s, client=client)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    driver = _Driver(spec, cast(Any, pipe))
    finished = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(Event(f"{key}-stop", client=client), loop, driver, finished),
        daemon=True,
    )
    watcher.start()
    forwarder: threading.Thread | None = None
    if live:
        pipe.live = queue.SimpleQueue()
        remote = Queue(f"{key}-rows", client=client)
        forwarder = threading.Thread(target=_forward, args=(pipe.live, remote), daemon=True)
        forwarder.start()
    try:
        loop.run_until_complete(driver.run())
    finally:
        finished.set()
        watcher.join(FORWARD_JOIN_S)
        if pipe.live is not None and forwarder is not None:
            pipe.live.put(None)
            forwarder.join(FORWARD_JOIN_S)
        close_loop(loop)
        gc.unfreeze()  # the driver froze the heap; this process lives on as a Dask worker
    return {
        "index": spec.index,
        "worker": get_worker().address,
        "messages": pipe.messages,
        "late_s": pipe.late_s,
    }


def run_distributed(plan: LoadPlan, *, cluster: object, processes: int | None = None) -> LoadResult:
    """Run `plan` on Dask workers (one generator per worker by default) and merge their results."""
    import distributed

    with connect(cluster) as client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise InputError(
                "cluster", f"no Dask worker joined within {WORKERS_TIMEOUT_S:g} s"
            ) from None
        threads = client.nthreads()
        addresses = sorted(threads)
        profile = plan.profile
        if processes is None:
            processes = min(len(addresses), profile.connections)
        processes = positive_int("processes", processes)
        slots = sum(threads.values())
        if processes > slots:
            raise InputError(
                "processes",
                f"must be at most the cluster's {slots} worker threads, got {processes}",
            )
        if processes > profile.connections:
            raise InputError(
                "processes",
                f"must be at most connections ({profile.connections}), got {processes}",
            )
        # a steady warm-up is judged by a local parent; on Dask the warm-up is its fixed cap
        plan = replace(plan, processes=processes, steady_warmup=False)
        drain = min(plan.timeout, MAX_DRAIN_S)
        specs = worker_specs(plan)
        placed = [addresses[i % len(addresses)] for i in range(processes)]
        offsets = clock_offsets(client, sorted(set(placed)))
        skew_ms = 1000 * max(abs(o.offset_s) for o in offsets.values())
        _say(
            plan,
            f"load {plan.url}: {processes} generator(s) on {len(set(placed))} Dask worker(s) of "
            f"{getattr(client.scheduler, 'address', '?')}, clock skew {skew_ms:.1f} ms",
        )
        key = f"workbench-load-{uuid.uuid4().hex[:12]}"
        ready_queue = distributed.Queue(f"{key}-ready", client=client)
        rows_queue = distributed.Queue(f"{key}-rows", client=client) if plan.progress else None
        live = _Collector(plan, specs)  # prints the merged seconds as they arrive
        start = distributed.Variable(f"{key}-start", client=client)
        futures = [
            client.submit(
                _generate,
                spec,
                key,
                offsets[placed[spec.index]].correction_s,
                rows_queue is not None,
                workers=[placed[spec.index]],
                allow_other_workers=False,
                pure=False,
                key=f"{key}-{spec.index}",
            )
            for spec in specs
        ]
        started = False
        try:
            ready: set[int] = set()
            deadline = time.monotonic() + READY_TIMEOUT_S
            while len(ready) < processes:
                _raise_failures(futures, placed)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Dask generators not ready within {READY_TIMEOUT_S:g} s")
                # batch=True returns at once (a timed-out get logs a traceback on the scheduler)
                ready.update(int(i) for i in ready_queue.get(batch=True))
                if len(ready) < processes:
                    time.sleep(0.05)
            start_wall = time.time() + START_DELAY_S
            start.set(start_wall)
            started = True
            timeout = START_DELAY_S + profile.warmup + profile.duration + drain + DEADLINE_MARGIN_S
            deadline = time.monotonic() + timeout
            while not all(f.done() for f in futures):
                _raise_failures(futures, placed)
                if time.monotonic() > deadline:
                    raise RuntimeError("Dask generators missed their deadline")
                _show(live, rows_queue)
                time.sleep(0.1)
            _raise_failures(futures, placed)
            _show(live, rows_queue)
            outputs = sorted(client.gather(futures), key=lambda o: o["index"])
        except BaseException:
            with contextlib.suppress(Exception):
                if not started:
                    start.set(None)  # generators waiting for a start time give up at once
                distributed.Event(f"{key}-stop", client=client).set()  # running ones stop now
                time.sleep(STOP_POLL_S)  # let them see it before their tasks are released
                client.cancel(futures)
            raise
        late = max(o["late_s"] for o in outputs)
        if late > LATE_START_WARN_S:
            _say(plan, f"  a generator started {1000 * late:.0f} ms late (slow task start)")
        collector = _Collector(replace(plan, progress=False), specs)
        collector.started_at = start_wall + profile.warmup
        collector.publish = False  # `live` told the listeners of these seconds already
        for output in outputs:
            for message in output["messages"]:
                collector.add(message)
        result = collector.result()
        with contextlib.suppress(Exception):  # scheduler-side leftovers are harmless
            start.delete()
            ready_queue.close()
            if rows_queue is not None:
                rows_queue.close()
        return replace(
            result,
            workers=tuple(o["worker"] for o in outputs),
            clock_skew_ms=round(skew_ms, 3),
            worker_hdr_latency=tuple(collector.finals[i]["lat"] for i in range(processes)),
        )


def _raise_failures(futures: list[Any], placed: list[str]) -> None:
    for i, future in enumerate(futures):
        if future.status == "error":
            raise RuntimeError(
                f"load generator {i} on Dask worker {placed[i]} failed: {future.exception()!r}"
            )


def _show(live: _Collector, rows: Any) -> None:
    """Feed forwarded rows to the live collector, which prints each second once all workers sent it."""
    if rows is None:
        return
    for message in rows.get(batch=True):
        live.add(message)
