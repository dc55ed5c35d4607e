"""The driver: schedules, sends and records the requests of one generator process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import multiprocessing.connection
import os
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from workbench import hdr as hist
from workbench.load._plan import WorkerSpec
from workbench.load._scenario import Pool
from workbench.load._seconds import SecondRows
from workbench.load._timer import Waker, run_queue_wait
from workbench.load._transport import (
    HttpxUser,
    RawConnection,
    connect_raw,
    make_httpx_client,
    pin_request,
)
from workbench.load._warmup import WARM_WINDOW_S, WarmupWindows

BACKLOG_MAX = 200_000  # queued intended send times per worker before arrivals are dropped
CONNECT_BACKOFF_S = 0.05
SWEEP_INTERVAL_S = 0.1
READY_TIMEOUT_S = 60.0
KEEPALIVE_MARGIN_S = 0.5  # a connection this close to the server's keep-alive timeout is not reused


class _Driver(WarmupWindows, SecondRows):
    """Schedules, sends and records the requests of one worker process."""

    def __init__(self, spec: WorkerSpec, pipe: multiprocessing.connection.Connection) -> None:
        self.spec = spec
        self.pipe = pipe
        self.profile = spec.profile
        self.open_loop = spec.profile.open_loop
        self.think = spec.profile.think_time
        self.raw = spec.transport == "raw"
        # reuse a connection only while the server surely keeps it (its keep-alive timeout)
        self.stale_after = max(spec.keepalive_idle - KEEPALIVE_MARGIN_S, spec.keepalive_idle / 2)
        self.ppid = os.getppid()
        self.pool: Any = ()
        self.next_request: Callable[[], Any] = lambda: None
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
        self.wait_mark = run_queue_wait()
        # a steady warm-up: the responses of the current warm-up window and their summed latency
        self.steady = spec.steady_warmup and spec.profile.warmup > 0
        self.start_at = math.inf
        self.warm_window = 0
        self.warm_count = 0
        self.warm_sum = 0.0
        self.warm_handle: asyncio.TimerHandle | None = None

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
            # A few connect now (the target answers before timing starts); the rest connect as
            # their first request goes out, in a closed loop as in an open one. Connected all at
            # once before timing, a closed loop's users landed on one gunicorn worker of a service
            # that had served before (the worker that woke first drained the accept queue): one
            # worker of two measured, 0.70 of wrk (which connects each user as it first sends).
            warm = self.conns[: min(4, len(self.conns))]
            await asyncio.gather(
                *(connect_raw(c, spec.host, spec.port, timeout=spec.timeout) for c in warm),
                return_exceptions=True,
            )
        else:
            # to the address that was checked (spec.host), never to a new lookup of the name
            pool = spec.scenario.requests(spec.base_url, seed=spec.seed + spec.index)
            self.pool = Pool.of(
                [(share, [pin_request(r, spec.host) for r in part]) for share, part in pool.parts()]
            )
            context = ssl.create_default_context()
            self.conns = [
                HttpxUser(
                    self,
                    make_httpx_client(
                        timeout=spec.timeout,
                        ssl_context=context,
                        keepalive_idle=self.stale_after,
                    ),
                )
                for _ in range(spec.connections)
            ]
            self._send = self._send_httpx
        # a request drawn per request from the pool: cycled, its period showed in the caches
        self.next_request = self.pool.picker(seed=f"pick:{spec.seed}:{spec.index}")
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
        self.wait_mark = run_queue_wait()
        self.tick_handle = loop.call_later(
            max(0.0, self.m_start + 1 - time.monotonic()), self._tick
        )
        self.sweep_handle = loop.call_later(SWEEP_INTERVAL_S, self._sweep)
        if self.steady:  # windows go to the parent, which may answer ("measure", at)
            self.start_at = start_at
            self.warm_handle = loop.call_later(
                max(0.0, start_at + WARM_WINDOW_S - time.monotonic()), self._warm_tick
            )
            loop.add_reader(self.pipe.fileno(), self._on_parent)
            # uvloop left the pipe non-blocking: a pooled worker's next recv() would then raise
            # (BlockingIOError) and end the worker, respawned for the next run (~0.3 s each)
            os.set_blocking(self.pipe.fileno(), True)
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
        if self.steady:
            loop.remove_reader(self.pipe.fileno())
            if self.warm_handle is not None:
                self.warm_handle.cancel()
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
        conn.answered = conn.retried = False
        self.busy_count += 1
        data = self.next_request()
        conn.data = data
        now = time.monotonic()
        if conn.transport is not None and now - conn.last_used > self.stale_after:
            conn.drop()  # idle past the server's keep-alive: it may be closing it right now
        transport = conn.transport
        if transport is None:
            self.loop.create_task(self._connect_send(conn, data))
            return
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
        if conn.retried:
            return  # a stale connection's request again: sent (and counted) already
        if conn.intended >= self.m_start:
            self.sent += 1
            if self.open_loop:
                lag = int((now - conn.intended) * 1e6)
                self.lag_d[lag] = self.lag_d.get(lag, 0) + 1

    def _send_httpx(self, user: HttpxUser, intended: float) -> None:
        user.busy = True
        user.intended = intended
        self.busy_count += 1
        request = self.next_request()
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
        conn.last_used = now
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
        elif self.steady:
            self.warm_count += 1
            self.warm_sum += now - conn.sent
        self._next(conn, now)

    def on_stale(self, conn: RawConnection) -> None:
        """Resend, once, a request whose kept-alive connection the server had closed."""
        if conn.intended >= self.m_start:
            self.stale += 1
        if not self.done:
            self.loop.create_task(self._connect_send(conn, conn.data))

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
