"""Monitor: parsing Prometheus text, deriving per-second columns, sampling a real service."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import psutil
import pytest

from service.settings import ServiceSettings
from workbench.launcher import ServiceProcess
from workbench.monitor import Monitor, derive, parse_metrics
from workbench.stack import Stack

TEXT_1 = """
# TYPE http_requests_total counter
http_requests_total{route="/a",status="200"} 10
http_requests_total{route="/b",status="200"} 10
# TYPE db_queries_total counter
db_queries_total{engine="read"} 20
# TYPE cache_hits_total counter
cache_hits_total{level="l1"} 0
# TYPE cache_misses_total counter
cache_misses_total{level="l1"} 0
"""
TEXT_2 = (
    TEXT_1.replace("} 10", "} 60")
    .replace("} 20", "} 70")
    .replace('cache_hits_total{level="l1"} 0', 'cache_hits_total{level="l1"} 30')
    .replace('cache_misses_total{level="l1"} 0', 'cache_misses_total{level="l1"} 10')
)


def test_derive_rates_and_ratios() -> None:
    row = derive(parse_metrics(TEXT_2), parse_metrics(TEXT_1), 2.0)
    assert row["server_rps"] == 50.0  # (120 - 20) / 2 s
    assert row["queries_per_request"] == 0.5
    assert row["l1_hit_ratio"] == 0.75


@pytest.mark.slow
def test_samples_a_real_service_and_stack(stack: Stack) -> None:
    with ServiceProcess(ServiceSettings(), stack) as svc:
        monitor = Monitor(
            metrics_url=svc.url + "/metrics",
            processes=lambda: {"service": svc.pids()[:1], "postgres": [stack.pids()["postgres"]]},
            interval=0.25,
        ).start()
        with httpx.Client() as client:
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                client.get(svc.url + "/users/1")
        frame = monitor.stop()
    assert len(frame) >= 3
    assert frame["server_rps"].max() > 10
    assert frame["service_rss_mib"].min() > 10
    assert frame["postgres_rss_mib"].min() > 1
    assert frame["service_cpu_pct"].max() > 0


@pytest.mark.slow
def test_cpu_of_processes_outside_the_run_is_counted_as_other() -> None:
    # a spinner re-parented away from this process: a neighbour, not part of the run
    spin = "import time; t = time.monotonic() + 2\nwhile time.monotonic() < t: pass"
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{spin}" >/dev/null 2>&1 &'], check=True)
    monitor = Monitor(metrics_url=None, processes=dict, interval=0.25).start()
    time.sleep(1.0)  # four samples, as many as 2 s at 0.5 s
    frame = monitor.stop()
    assert frame["other_cpu_pct"].iloc[1:].mean() > 50


FAMILY = """
import subprocess, sys, time
burn = "import time\\nt = time.process_time() + 1.5\\nwhile time.process_time() < t: pass"
subprocess.run([sys.executable, "-c", burn])  # a child burns, exits and is reaped
t = time.process_time() + 1.5
while time.process_time() < t: pass  # then the parent burns
"""


def _family_cpu(pid: int) -> tuple[float, int]:
    """CPU-seconds of a process, its reaped children and its live descendants, read now; and
    how many descendants are alive."""
    total = 0.0
    root = psutil.Process(pid)
    children = root.children(recursive=True)
    for proc in [root, *children]:
        times = proc.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total, len(children)


def _until(pid: int, done: Callable[[float, int], bool]) -> tuple[float, float]:
    """Wait (on a busy machine: by CPU, not by the clock) until done(cpu, children); (time, cpu)."""
    deadline = time.monotonic() + 60
    while True:
        now, (cpu, children) = time.time(), _family_cpu(pid)
        if done(cpu, children):
            return now, cpu
        assert time.monotonic() < deadline, "the family did not get the CPU it needed"
        time.sleep(0.02)


@pytest.mark.slow
def test_cpu_seconds_match_the_processes_own_counters() -> None:
    proc = subprocess.Popen([sys.executable, "-c", FAMILY])
    try:
        # the family exists before the monitor: its CPU so far is not counted
        _until(proc.pid, lambda cpu, children: children > 0)
        monitor = Monitor(
            metrics_url=None, processes=lambda: {"family": [proc.pid]}, cpu_interval=0.05
        ).start()
        base = _family_cpu(proc.pid)[0]
        t0, cpu0 = _until(proc.pid, lambda cpu, _: cpu > base + 0.5)  # the child is burning
        # the child exits within the window (its CPU moves to the parent), then the parent burns
        _, reaped = _until(proc.pid, lambda _, children: children == 0)
        t1, cpu1 = _until(proc.pid, lambda cpu, _: cpu > reaped + 0.5)
        time.sleep(0.2)
        monitor.stop()
    finally:
        proc.wait(60)
    counted = monitor.cpu_seconds(t0, t1)["family"]
    assert cpu1 - cpu0 > 0.8  # the test measured a busy family
    assert counted == pytest.approx(cpu1 - cpu0, rel=0.1)
    # before the monitor began nothing is counted
    assert monitor.cpu_seconds(t0 - 100, t0 - 50)["family"] == 0.0
