"""Soak: the optimized service at 70% of its capacity for minutes; memory growth and P99 drift.

Run: `.venv/bin/python benchmarks/soak.py --duration 300` (or `--rate 1500` to skip the capacity
search). Prints requests sent, errors (expect 0), the RSS growth of every process (service master
and workers, PostgreSQL, Redis, the load generator) and the P99 drift between the first and the
last minute (the first and last third when the run is shorter than three minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from service.settings import ServiceSettings
from workbench.launcher import ServiceProcess
from workbench.load import LoadResult, run_load
from workbench.stack import Stack

ENDPOINT = "/users/{id}"
START_RATE = 500.0
STEP_FACTOR = 1.5
P99_LIMIT_MS = 50.0  # a step with a higher P99, any error or a shortfall is beyond capacity
SHORTFALL = 0.95


@dataclass(frozen=True)
class Step:
    """One step of the capacity search."""

    rate: float
    throughput: float
    p99_ms: float
    errors: int
    saturated: bool
    p99_limit_ms: float = P99_LIMIT_MS

    @property
    def ok(self) -> bool:
        """Kept up: no errors, P99 under the limit, nearly all asked requests answered."""
        return (
            self.errors == 0
            and self.p99_ms < self.p99_limit_ms
            and self.throughput >= SHORTFALL * self.rate
            and not self.saturated
        )


def capacity(
    url: str, *, users: int, step_s: float, p99_limit_ms: float
) -> tuple[float, list[Step]]:
    """The highest open-loop rate that kept up, by a geometric step search."""
    steps: list[Step] = []
    rate = START_RATE
    while True:
        result = run_load(
            url,
            rate=rate,
            connections=256,
            duration=step_s,
            warmup=1.0,
            id_max=users,
            progress=False,
        )
        step = Step(
            rate=rate,
            throughput=result.throughput_rps,
            p99_ms=result.percentiles_ms()["p99"],
            errors=result.errors,
            saturated=result.generator_saturated,
            p99_limit_ms=p99_limit_ms,
        )
        steps.append(step)
        print(
            f"  step {rate:8,.0f} req/s: {step.throughput:8,.0f} done, P99 {step.p99_ms:7.1f} ms, "
            f"errors {step.errors}{' (generator saturated)' if step.saturated else ''}"
            f" -> {'ok' if step.ok else 'beyond'}",
            flush=True,
        )
        if not step.ok:
            good = [s.rate for s in steps if s.ok]
            return (max(good) if good else rate / STEP_FACTOR), steps
        rate *= STEP_FACTOR


@dataclass
class MemorySampler:
    """RSS of named processes every `interval` seconds, in a thread."""

    processes: Callable[[], dict[str, list[int]]]
    interval: float = 1.0
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        """Sample until stop()."""
        self._thread = threading.Thread(target=self._loop, daemon=True, name="soak-memory")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            row: dict[str, float] = {}
            for name, pids in self.processes().items():
                total = 0.0
                for pid in pids:
                    try:
                        total += psutil.Process(pid).memory_info().rss / 2**20
                    except psutil.Error:
                        continue
                row[name] = total
            self.samples.append((time.monotonic(), row))
            self._stop.wait(self.interval)

    def growth(self, window_s: float) -> dict[str, tuple[float, float]]:
        """Per process: (mean RSS MiB in the first window, in the last window)."""
        if not self.samples:
            return {}
        t0, t1 = self.samples[0][0], self.samples[-1][0]
        first = [row for t, row in self.samples if t - t0 <= window_s]
        last = [row for t, row in self.samples if t1 - t <= window_s]
        out = {}
        for name in self.samples[-1][1]:
            a = [row[name] for row in first if row.get(name)]
            b = [row[name] for row in last if row.get(name)]
            if a and b:
                out[name] = (statistics.fmean(a), statistics.fmean(b))
        return out


def _processes(service: ServiceProcess, stack: Stack) -> Callable[[], dict[str, list[int]]]:
    """Named process groups: service master and each worker, PostgreSQL tree, Redis, generator."""
    me = psutil.Process()

    def tree(pid: int) -> list[int]:
        try:
            return [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
        except psutil.Error:
            return []

    def current() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        pids = service.pids()
        if pids:
            out["service master"] = [pids[0]]
            with_children = psutil.Process(pids[0]).children()
            for i, worker in enumerate(sorted(with_children, key=lambda p: p.pid)):
                out[f"service worker {i}"] = [worker.pid]
        server_pids = stack.pids()
        if "postgres" in server_pids:
            out["postgres (all backends)"] = tree(server_pids["postgres"])
        if "redis" in server_pids:
            out["redis"] = [server_pids["redis"]]
        generator = [os.getpid()]
        for child in me.children():
            try:
                if "multiprocessing.spawn" in " ".join(child.cmdline()):
                    generator.append(child.pid)
            except psutil.Error:
                continue
        out["generator (parent + load workers)"] = generator
        return out

    return current


def p99_drift(result: LoadResult, window_s: float) -> tuple[float, float]:
    """Median per-second P99 (ms) in the first and in the last window of the run."""
    rows = [r for r in result.rows if r["p99_ms"] == r["p99_ms"]]  # skip NaN (empty seconds)
    n = max(1, int(window_s))
    first = [r["p99_ms"] for r in rows[:n]]
    last = [r["p99_ms"] for r in rows[-n:]]
    return statistics.median(first), statistics.median(last)


def main() -> None:
    """Find capacity (or take --rate), soak at 70% of it, print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="soak seconds (300)")
    parser.add_argument("--rate", type=float, default=None, help="skip the search: soak rate")
    parser.add_argument("--share", type=float, default=0.7, help="share of capacity (0.7)")
    parser.add_argument("--users", type=int, default=2_000, help="users seeded (2000)")
    parser.add_argument("--step", type=float, default=3.0, help="seconds per search step (3)")
    parser.add_argument("--warm", type=float, default=5.0, help="closed-loop cache warm-up s (5)")
    parser.add_argument(
        "--p99-limit", type=float, default=P99_LIMIT_MS, help="search: P99 ms a step may reach"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting of the optimized preset, repeatable",
    )  # fmt: skip
    args = parser.parse_args()
    if args.duration <= 0 or not 0 < args.share <= 1 or (args.rate is not None and args.rate <= 0):
        parser.error("--duration and --rate must be > 0, --share in (0, 1]")
    root = Path(os.environ.get("WORKBENCH_STACK_DIR") or tempfile.mkdtemp(prefix="soak-stack-"))
    root.chmod(0o755)
    overrides = dict(pair.split("=", 1) for pair in args.overrides if "=" in pair)
    settings = ServiceSettings.optimized().replace(**overrides)
    with (
        Stack(users=args.users, root=root, progress=lambda _: None) as stack,
        ServiceProcess(settings, stack) as service,
    ):
        url = service.url + ENDPOINT
        # Caches warm first: a soak measures the steady state, not the cold start. Many
        # connections, so that the batcher's batches fill instead of waiting for its flush timer.
        warm = run_load(
            url, connections=128, duration=args.warm, warmup=0.5, id_max=args.users, progress=False
        )
        print(f"cache warm-up: {warm.requests:,} requests in {args.warm:g} s", flush=True)
        if args.rate is None:
            print(f"capacity search on {url} (open loop, {args.step:g} s steps):", flush=True)
            found, _ = capacity(
                url, users=args.users, step_s=args.step, p99_limit_ms=args.p99_limit
            )
            rate = args.share * found
            print(f"capacity ~{found:,.0f} req/s; soaking at {rate:,.0f} req/s", flush=True)
        else:
            rate = args.rate
        sampler = MemorySampler(_processes(service, stack)).start()
        workers_before = sorted(p.pid for p in psutil.Process(service.pids()[0]).children())
        try:
            result = run_load(
                url, rate=rate, connections=256, duration=args.duration, warmup=2.0,
                id_max=args.users, progress=False,
            )  # fmt: skip
        finally:
            sampler.stop()
        workers_after = sorted(p.pid for p in psutil.Process(service.pids()[0]).children())
    window = min(60.0, args.duration / 3)
    print(f"\nsoak {args.duration:g} s at {rate:,.0f} req/s ({settings.server}, "
          f"{settings.workers} workers), windows of {window:g} s:")  # fmt: skip
    print(f"  requests sent {result.sent:,}, completed {result.completed + result.late:,}, "
          f"errors {result.errors} {dict((k, v) for k, v in result.error_classes.items() if v)}")  # fmt: skip
    if result.generator_saturated:
        print(f"  GENERATOR SATURATED: {result.saturation_reason}")
    first, last = p99_drift(result, window)
    print(f"  P99 (median of per-second P99) first {first:.2f} ms, last {last:.2f} ms, "
          f"drift {last - first:+.2f} ms ({100 * (last - first) / first:+.0f}%)")  # fmt: skip
    print(
        f"  overall P99 {result.percentiles_ms()['p99']:.2f} ms, max {result.percentiles_ms()['max']:.1f} ms"
    )
    print("  RSS MiB (mean of first window -> last window, growth):")
    for name, (a, b) in sampler.growth(window).items():
        print(f"    {name:36s} {a:8.1f} -> {b:8.1f}  {b - a:+7.1f} MiB ({100 * (b - a) / a:+.1f}%)")
    bad = [r for r in result.rows if r["errors"]]
    for row in bad[:10]:  # where errors happened, to tell a stall from a scattered race
        classes = {k: row[k] for k in ("timeout", "connect", "reset", "status_5xx") if row[k]}
        print(f"  second {row['second']}: errors {classes}, P99 {row['p99_ms']:.1f} ms")
    if workers_before != workers_after:
        print(
            f"  service workers were replaced during the run: {workers_before} -> {workers_after}"
        )


if __name__ == "__main__":
    main()
