"""Monitor: the server side of a run, sampled every second — /metrics plus CPU and memory per process."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from workbench import anatomy
from workbench.load._transport import pin_request

Sample = dict[str, float]


def parse_metrics(text: str) -> Sample:
    """Prometheus text → {name: value}, summed over labels, plus {name{k=v}: value} per label set."""
    return _sample(text_string_to_metric_families(text))


def _sample(families: Iterable[Metric]) -> Sample:
    out: Sample = {}
    for family in families:
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
            if sample.labels:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                key = f"{sample.name}{{{labels}}}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _delta(now: Sample, before: Sample, name: str) -> float:
    return now.get(name, 0.0) - before.get(name, 0.0)


def derive(now: Sample, before: Sample, seconds: float) -> dict[str, float]:
    """The columns a tuner reads, from two consecutive scrapes `seconds` apart."""
    requests = _delta(now, before, "http_requests_total")
    row = {
        "server_rps": requests / seconds if seconds > 0 else 0.0,
        "in_flight": now.get("http_requests_in_flight", 0.0),
        "pool_size": now.get("db_pool_size", 0.0),
        "pool_checked_out": now.get("db_pool_checked_out", 0.0),
        "pool_overflow": now.get("db_pool_overflow", 0.0),
    }
    waits = _delta(now, before, "db_pool_checkout_seconds_count")
    row["pool_wait_ms"] = (
        1000 * _delta(now, before, "db_pool_checkout_seconds_sum") / waits if waits else 0.0
    )
    row["connects_per_s"] = (
        _delta(now, before, "db_connections_opened_total") / seconds if seconds > 0 else 0.0
    )
    holds = _delta(now, before, "db_connection_hold_seconds_count")
    row["checkouts_per_s"] = holds / seconds if seconds > 0 else 0.0
    row["hold_ms"] = (
        1000 * _delta(now, before, "db_connection_hold_seconds_sum") / holds if holds else 0.0
    )
    lags = _delta(now, before, "event_loop_lag_seconds_count")
    row["loop_lag_ms"] = (
        1000 * _delta(now, before, "event_loop_lag_seconds_sum") / lags if lags else 0.0
    )
    row["queries_per_request"] = (
        _delta(now, before, "db_queries_total") / requests if requests else 0.0
    )
    for level in ("l1", "l2"):
        hits = _delta(now, before, f"cache_hits_total{{level={level}}}")
        misses = _delta(now, before, f"cache_misses_total{{level={level}}}")
        row[f"{level}_hit_ratio"] = hits / (hits + misses) if hits + misses else float("nan")
    return row


def _family(pids: list[int]) -> set[int]:
    """The pids that are alive, with all their descendants."""
    family: set[int] = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(pid).children(recursive=True)
            family.add(pid)
            family.update(child.pid for child in children)
    return family


class _Machine:
    """CPU of every process on the machine, from per-process accounting.

    /proc/stat's machine-wide counters are tick-sampled and, in the VMs these run on, were
    seen reading 5% busy while the processes' own (exact) counters summed to 65%.
    """

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.at = time.monotonic()
        self.sample(set())

    def sample(self, ours: set[int]) -> tuple[float, float]:
        """CPU % of one core since the last call: all processes, and those outside `ours`."""
        now = time.monotonic()
        elapsed = max(1e-6, now - self.at)
        total = other = 0.0
        seen: dict[int, float] = {}
        for proc in psutil.process_iter(["cpu_times"]):
            times = proc.info["cpu_times"]
            if times is None:
                continue
            used = seen[proc.pid] = times.user + times.system
            delta = used - self.seen.get(proc.pid, used)  # a new process counts from here
            total += delta
            if proc.pid not in ours:
                other += delta
        self.seen, self.at = seen, now
        return 100 * total / elapsed, 100 * other / elapsed


_PROC = os.path.exists("/proc/self/stat")
_TICKS = os.sysconf("SC_CLK_TCK") if _PROC else 100


def _total(pid: int) -> tuple[float, int]:
    """CPU-seconds of a process and of the children it has reaped, and its parent's pid.

    Read from /proc/<pid>/stat where there is one: five times cheaper than psutil, which matters
    when a ledger reads every PostgreSQL backend ten times a second.
    """
    if not _PROC:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times, ppid = proc.cpu_times(), proc.ppid()
        return times.user + times.system + times.children_user + times.children_system, ppid
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        raise psutil.NoSuchProcess(pid) from None
    fields = data[data.rindex(b")") + 2 :].split()  # after the command name, which may hold spaces
    # utime, stime, cutime, cstime (fields 14-17 of proc(5)), in clock ticks
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / _TICKS, int(fields[1])


class _Ledger:
    """Cumulative CPU-seconds of each named family of processes, read often to cut windows finely.

    A family's count is the sum, over its live members, of their own CPU plus that of the children
    they reaped: a backend or worker that exits moves its CPU into its parent's counter, so nothing
    is lost while the parent is a member. Only processes that existed before the ledger began
    start from their reading at first sight; one created later counts from its birth.
    """

    def __init__(self) -> None:
        self.began = time.time()
        self.members: dict[str, dict[int, tuple[int, float]]] = {}  # pid → (ppid, last total)
        self.offset: dict[str, float] = {}
        self.readings: list[tuple[float, dict[str, float]]] = []  # (wall-clock time, totals)

    def refresh(self, named: dict[str, list[int]]) -> None:
        """Take in the current members of each family (roots and their descendants)."""
        for name, pids in named.items():
            members = self.members.setdefault(name, {})
            self.offset.setdefault(name, 0.0)
            for pid in _family(pids) - set(members):
                try:
                    total, ppid = _total(pid)
                    born = psutil.Process(pid).create_time()
                except psutil.Error:
                    continue
                members[pid] = (ppid, total)
                if born < self.began:  # its CPU before the ledger began is not this run's
                    self.offset[name] -= total

    def sample(self, now: float) -> None:
        """Record every family's cumulative CPU-seconds at wall-clock time `now`."""
        row: dict[str, float] = {}
        for name, members in self.members.items():
            count = 0.0
            for pid, (ppid, last) in list(members.items()):
                try:
                    total, _ = _total(pid)
                except psutil.Error:
                    del members[pid]
                    # Reaped by a member, its CPU is now in that member's count; otherwise keep it.
                    if ppid not in members:
                        self.offset[name] += last
                    continue
                members[pid] = (ppid, total)
                count += total
            row[name] = count + self.offset[name]
        self.readings.append((now, row))

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU-seconds of each family between two wall-clock times (linear between readings)."""
        out: dict[str, float] = {}
        readings = list(self.readings)
        for name in sorted({name for _, row in readings for name in row}):
            points = [(t, row[name]) for t, row in readings if name in row]
            if len(points) < 2:
                continue
            times, values = zip(*points, strict=True)
            out[name] = max(
                0.0, float(np.interp(end, times, values) - np.interp(start, times, values))
            )
        return out


def _usage(pids: list[int], cache: dict[int, psutil.Process]) -> tuple[float, float]:
    """CPU % (of one core) and RSS MiB summed over pids and their children."""
    cpu = rss = 0.0
    for pid in _family(pids):
        try:
            proc = cache.get(pid)
            if proc is None:
                proc = cache[pid] = psutil.Process(pid)
                proc.cpu_percent(None)  # first call primes the counter
            cpu += proc.cpu_percent(None)
            rss += proc.memory_info().rss / 2**20
        except psutil.Error:
            cache.pop(pid, None)
    return cpu, rss


@dataclass
class Monitor:
    """Samples a service's /metrics and the CPU/RSS of its processes every `interval` seconds.

    Each named family's cumulative CPU is also read every `cpu_interval` seconds, so that
    cpu_seconds() can cut a load's measured window out of it without the warm-up.
    """

    metrics_url: str | None
    processes: Callable[[], dict[str, list[int]]]
    interval: float = 1.0
    cpu_interval: float = 0.1
    # Families accounted in cpu_seconds() only, without per-second columns (the load reports its
    # generators' CPU per second itself).
    cpu_only: tuple[str, ...] = ("generator",)
    # the address the loopback guard checked for metrics_url's host: scrapes go there, by name
    metrics_address: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list, init=False)
    # (epoch s, the service's anatomy histograms) at each scrape, for the run's window
    snapshots: list[tuple[float, anatomy.Snapshot]] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _ledger: _Ledger = field(default_factory=_Ledger, init=False, repr=False)

    def start(self) -> Monitor:
        """Sample in a background thread until stop()."""
        self._ledger = _Ledger()
        self._thread = threading.Thread(target=self._loop, name="workbench-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> pd.DataFrame:
        """Stop sampling; one row per sample, with wall-clock `time`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.frame()

    def frame(self) -> pd.DataFrame:
        """The samples so far."""
        return pd.DataFrame(self.rows)

    def cpu_seconds(self, start: float, end: float) -> dict[str, float]:
        """CPU-seconds each named family used between two wall-clock (epoch) times."""
        return self._ledger.between(start, end)

    def _loop(self) -> None:
        cache: dict[int, psutil.Process] = {}
        machine = _Machine()
        cores = psutil.cpu_count() or 1
        before: Sample | None = None
        last = time.time()
        due = 0.0  # the next full sample, wall-clock
        stopping = False
        # The CA bundle only for https: loading it costs ~50 ms of CPU as the load begins.
        tls = bool(self.metrics_url and self.metrics_url.startswith("https:"))
        with httpx.Client(timeout=max(0.5, self.interval), verify=tls) as client:
            while True:
                now_wall = time.time()
                if now_wall >= due or stopping:
                    # On stop, one last sample covers the interval that was running.
                    due = now_wall + self.interval
                    before = self._full_sample(
                        client, cache, machine, cores, before, last, now_wall
                    )
                    last = now_wall
                self._ledger.sample(time.time())
                if stopping:
                    return
                pause = min(due, time.time() + self.cpu_interval) - time.time()
                stopping = self._stop.wait(max(0.0, pause))

    def _full_sample(
        self,
        client: httpx.Client,
        cache: dict[int, psutil.Process],
        machine: _Machine,
        cores: int,
        before: Sample | None,
        last: float,
        now_wall: float,
    ) -> Sample | None:
        """One full sample (metrics, CPU and RSS per family, the machine) appended to rows."""
        row: dict[str, Any] = {"time": now_wall, "since": last}
        if self.metrics_url:
            try:
                request = client.build_request("GET", self.metrics_url)
                if self.metrics_address:
                    request = pin_request(request, self.metrics_address)
                families = list(text_string_to_metric_families(client.send(request).text))
                scraped = _sample(families)
                snap = anatomy.snapshot(families)
                if snap is not None:
                    self.snapshots.append((now_wall, snap))
            except (httpx.HTTPError, ValueError):
                scraped = None
            if scraped is not None:
                if before is not None:
                    row.update(derive(scraped, before, now_wall - last))
                before = scraped
        named = self.processes()
        self._ledger.refresh(named)
        for name, pids in named.items():
            if name in self.cpu_only:
                continue
            cpu, rss = _usage(pids, cache)
            row[f"{name}_cpu_pct"] = cpu
            row[f"{name}_rss_mib"] = rss
        # Processes that are not part of the run (this process's tree, load workers
        # included, and the named ones) are a neighbour disturbing the measurement.
        ours = _family([os.getpid(), *(p for pids in named.values() for p in pids)])
        total, other = machine.sample(ours)
        row["machine_cpu_pct"] = min(100.0, total / cores)
        row["other_cpu_pct"] = other
        if len(row) > 1:
            self.rows.append(row)
        return before
