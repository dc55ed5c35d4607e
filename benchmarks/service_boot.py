"""CPU-seconds a service boot costs: ServiceProcess spawn to /health 200, per preset.

Run: `.venv/bin/python benchmarks/service_boot.py --boots 5`. One embedded stack for the run;
each case's service is started `--boots` times in turn (the cases alternate, so drift on a
shared machine falls on all): the naive preset (uvicorn, one process), the optimized one
(gunicorn's master and two workers, preload) and gunicorn2 (two workers, no preload). Per boot: the CPU-seconds (user + system) of the service's
process tree when /health first answers 200 (the master and its workers, those reaped
included), the same a second later (gunicorn's other workers finish booting after the first
answers; the service's idle watchers add a few ms), its whole life's (that second and its stop
too: the reaped children's rusage), the CPU this process spent starting and polling it, and the
wall seconds to healthy. Medians over the boots are printed, with the load
average: wall seconds on a busy machine mean little, CPU-seconds much more.

Measured (medians of 8, load 1-2, CPU-s at healthy / a second later / lifetime), before and
after the start-up cuts (service.heap, lazy httpx, uvicorn's modules in gunicorn's master,
service.worker): naive 0.68/0.685/0.71 -> 0.575/0.585/0.60; optimized 1.00/1.055/1.18 ->
0.785/0.83/0.956; gunicorn2 1.275/1.32/1.39 -> 1.06/1.13/1.20. This process's polling:
0.027 -> 0.014 CPU-s per boot.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from dataclasses import dataclass

import psutil

from service.settings import ServiceSettings
from workbench.launcher import ServiceProcess
from workbench.stack import Stack

SETTLE_S = 1.0
# The presets, and gunicorn's two workers without preload (the defaults otherwise): what most
# of the test suite's gunicorn services are.
CASES = {
    "naive": ServiceSettings.naive,
    "optimized": ServiceSettings.optimized,
    "gunicorn2": lambda: ServiceSettings(server="gunicorn", workers=2),
}


@dataclass(frozen=True)
class Boot:
    """One boot's costs."""

    cpu_healthy: float  # the service's process tree, spawn to /health 200
    cpu_settled: float  # the same SETTLE_S later (every worker booted)
    cpu_launcher: float  # this process: spawning and polling /health
    cpu_total: float  # the service's whole life: boot, SETTLE_S idle, stop (reaped children)
    wall: float  # spawn to /health 200


def tree_cpu(pid: int) -> float:
    """User + system CPU-seconds of a process, its living descendants and its reaped children."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def children_cpu() -> float:
    """User + system CPU-seconds of this process's reaped children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def boot(settings: ServiceSettings, stack: Stack) -> Boot:
    """Start the service once, measure, stop it."""
    service = ServiceProcess(settings, stack)
    reaped = children_cpu()
    own = time.process_time()
    service.start()
    try:
        launcher = time.process_time() - own
        assert service.proc is not None
        healthy = tree_cpu(service.proc.pid)
        time.sleep(SETTLE_S)
        settled = tree_cpu(service.proc.pid)
    finally:
        service.stop()
    return Boot(healthy, settled, launcher, children_cpu() - reaped, service.boot_s)


def main(argv: list[str] | None = None) -> int:
    """Boot each case --boots times and print the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--boots", type=int, default=5, help="boots per case")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only these cases")
    parser.add_argument("--users", type=int, default=2_000, help="seeded users")
    parser.add_argument("--database-url", help="attach to this PostgreSQL (else embedded)")
    parser.add_argument("--redis-url", help="attach to this Redis (else embedded)")
    args = parser.parse_args(argv)
    names = args.case or list(CASES)
    boots: dict[str, list[Boot]] = {name: [] for name in names}
    with Stack(
        users=args.users,
        database_url=args.database_url,
        redis_url=args.redis_url,
        progress=lambda _: None,
    ) as stack:
        for _ in range(args.boots):
            for name in names:
                boots[name].append(boot(CASES[name](), stack))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {args.boots}")
    print(
        f"{'case':<10} {'cpu@healthy':>11} {'cpu+1s':>8} {'lifetime':>8} {'launcher':>8}"
        f" {'wall':>6}"
    )
    for name, runs in boots.items():
        print(
            f"{name:<10} {statistics.median(b.cpu_healthy for b in runs):>10.3f}s"
            f" {statistics.median(b.cpu_settled for b in runs):>7.3f}s"
            f" {statistics.median(b.cpu_total for b in runs):>7.3f}s"
            f" {statistics.median(b.cpu_launcher for b in runs):>7.3f}s"
            f" {statistics.median(b.wall for b in runs):>5.2f}s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
