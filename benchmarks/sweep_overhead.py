"""Per-point overhead of a sweep: wall time per point beyond its measured seconds.

Run: `.venv/bin/python benchmarks/sweep_overhead.py --points 4 --duration 2`. The overhead is the
service restart, the warm-up, the server sampling and the store write; the goal is <= 3 s.
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
    start = sum(t.get("service_start_s", 0.0) for t in timings) / len(timings)
    load = sum(t.get("load_s", 0.0) for t in timings) / len(timings)
    print(f"points                       {args.points}")
    print(f"measured seconds per point   {args.duration:.2f}")
    print(f"wall seconds per point       {per_point:.2f}")
    print(f"  service start (mean)       {start:.2f}")
    print(f"  warm-up                    {args.warmup:.2f}")
    print(f"  load engine start/drain    {load - args.duration - args.warmup:.2f}")
    print(f"  sampling, attribution, store {per_point - start - load:.2f}")
    print(
        f"overhead per point           {overhead:.2f} s  (goal <= 3 s: {'met' if overhead <= 3 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
