"""Per-point overhead of a sweep: wall time per point beyond its measured seconds.

Run: `.venv/bin/python benchmarks/sweep_overhead.py --points 4 --duration 2`. The overhead is the
service (re)start, the warm-up, the load engine's start and drain, the server sampling and the
store write; the goal is <= 3 s. Within a sweep the load's worker processes are kept from point to
point and each service stops in the background while the next one boots (the next load waits
until it is gone); the last one's stop is counted here, spread over the points.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import Sweep

GOAL_S = 3.0


def main(argv: list[str] | None = None) -> int:
    """Time an in-process sweep and print the overhead per point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=4, help="grid points (pool_size values)")
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point")
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args(argv)
    grid = {"pool_size": [5 + 5 * i for i in range(args.points)]}
    base = Experiment(connections=32, duration=args.duration, warmup=args.warmup)
    with (
        tempfile.TemporaryDirectory() as folder,
        Stack(users=args.users, progress=lambda _: None) as stack,
    ):
        store = Store(Path(folder))
        started = time.perf_counter()
        Sweep(grid, base=base).run(stack, store=store, progress=False)
        wall = time.perf_counter() - started
        timings = [store.load(run_id).manifest["timings"] for run_id in store.ids()]
    per_point = wall / args.points
    overhead = per_point - args.duration

    def mean(key: str) -> float:
        return sum(t.get(key, 0.0) for t in timings) / len(timings)

    start, load = mean("service_start_s"), mean("load_s")
    waited, stop = mean("previous_stop_wait_s"), mean("service_stop_s")
    engine = load - args.duration - args.warmup
    rest = per_point - start - waited - load - stop
    rows = [
        ("service start (+ load workers)", start),
        ("wait for previous service stop", waited),
        ("warm-up", args.warmup),
        ("load engine start/drain", engine),
        ("service stop (in foreground)", stop),
        ("sampling, store, last stop (spread)", rest),
    ]
    print(f"points                                 {args.points}")
    print(f"measured seconds per point             {args.duration:.2f}")
    print(f"wall seconds per point                 {per_point:.2f}")
    for label, seconds in rows:
        print(f"  {label:<36} {seconds:5.2f}")
    verdict = "met" if overhead <= GOAL_S else "NOT met"
    print(
        f"overhead per point                     {overhead:.2f} s  (goal <= {GOAL_S:g} s: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
