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
import pandas as pd
import psutil
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from workbench import anatomy

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
    """Samples a service's /metrics and the CPU/RSS of its processes every `interval` seconds."""

    metrics_url: str | None
    processes: Callable[[], dict[str, list[int]]]
    interval: float = 1.0
    rows: list[dict[str, Any]] = field(default_factory=list, init=False)
    # (epoch s, the service's anatomy histograms) at each scrape, for the run's window
    snapshots: list[tuple[float, anatomy.Snapshot]] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def start(self) -> Monitor:
        """Sample in a background thread until stop()."""
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

    def _loop(self) -> None:
        cache: dict[int, psutil.Process] = {}
        machine = _Machine()
        cores = psutil.cpu_count() or 1
        before: Sample | None = None
        last = time.time()
        stopping = False
        # The CA bundle only for https: loading it costs ~50 ms of CPU as the load begins.
        tls = bool(self.metrics_url and self.metrics_url.startswith("https:"))
        with httpx.Client(timeout=max(0.5, self.interval), verify=tls) as client:
            while True:
                now_wall = time.time()
                row: dict[str, Any] = {"time": now_wall, "since": last}
                if self.metrics_url:
                    try:
                        families = list(
                            text_string_to_metric_families(client.get(self.metrics_url).text)
                        )
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
                for name, pids in named.items():
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
                last = now_wall
                if stopping:
                    return
                # On stop, one last sample covers the interval that was running.
                stopping = self._stop.wait(max(0.0, self.interval - (time.time() - now_wall)))
