"""Per-point overhead of a sweep: wall time per point beyond its measured seconds.

In-process: `.venv/bin/python benchmarks/sweep_overhead.py --points 4 --duration 2`. The overhead
is the service (re)start, the warm-up (until latency is steady, 1 s at most), the load engine's
start and drain, the server sampling and the store write; the goal is <= 2 s. Within a sweep the load's worker processes are kept from
point to point, the next point's service boots while this one's results are stored, and each
service stops in the background (the next load waits until it is gone); the last one's stop is
counted here, spread over the points. The next service's boot (its own imports, ~1 s: the bulk of
what is left) starts as the load ends; "wait for the service booted ahead" is the part of it that
the sampling and the store did not hide.

Papermill: `.venv/bin/python benchmarks/sweep_overhead.py --papermill --duration 2` times
`workbench sweep notebooks/01_quickstart.ipynb -p pool_size 5,20 -p workers 1,2 -p duration 2`
(one warm kernel for the sweep) against the goal of <= 5 s per point beyond its measured seconds
(duration + the notebook's 1 s warm-up), with the phases read from the executed notebooks
(papermill's cell timings) and the stored runs' timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import Sweep

GOAL_S = 2.0
PAPERMILL_GOAL_S = 5.0
QUICKSTART_WARMUP_S = 1.0  # the quickstart notebook's warm-up before its measured seconds


def main(argv: list[str] | None = None) -> int:
    """Time an in-process sweep and print the overhead per point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=4, help="grid points (pool_size values)")
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per point")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per point at most (steady)"
    )
    parser.add_argument(
        "--users", type=int, default=None, help="seeded users (10000 in-process, else 100000)"
    )
    parser.add_argument(
        "--papermill", action="store_true", help="time a papermill sweep of the quickstart"
    )
    args = parser.parse_args(argv)
    if args.papermill:
        return papermill_sweep(duration=args.duration, users=args.users)
    args.users = args.users or 10_000
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
        runs = [store.load(run_id) for run_id in store.ids()]
        timings = [run.manifest["timings"] for run in runs]
        # a sweep's warm-up ends once latency is steady: --warmup is its cap
        warmup = sum(run.summary()["warmup_s"] for run in runs) / len(runs)
    per_point = wall / args.points
    overhead = per_point - args.duration

    def mean(key: str) -> float:
        return sum(t.get(key, 0.0) for t in timings) / len(timings)

    start, load = mean("service_start_s"), mean("load_s")
    booted, waited = mean("service_wait_s"), mean("previous_stop_wait_s")
    sampling, stop = mean("sampling_stop_s"), mean("service_stop_s")
    engine = load - args.duration - warmup
    rest = per_point - start - booted - waited - load - sampling - stop
    rows = [
        ("service start (+ load workers)", start),
        ("wait for the service booted ahead", booted),
        ("wait for previous service stop", waited),
        (f"warm-up (steady, cap {args.warmup:g} s)", warmup),
        ("load engine start/drain", engine),
        ("server sampling's last sample", sampling),
        ("service stop (in foreground)", stop),
        ("store, last stop, the rest", rest),
    ]
    print(f"points                                 {args.points}")
    print(f"measured seconds per point             {args.duration:.2f}")
    print(f"wall seconds per point                 {per_point:.2f}")
    for label, seconds in rows:
        print(f"  {label:<36} {seconds:5.2f}")
    boot = mean("service_boot_s")  # the next point's boot starts as this point's load ends
    print(f"service boot, spawn to healthy (mean)  {boot:.2f}")
    verdict = "met" if overhead <= GOAL_S else "NOT met"
    print(
        f"overhead per point                     {overhead:.2f} s  (goal <= {GOAL_S:g} s: {verdict})"
    )
    return 0


def papermill_sweep(*, duration: float, users: int | None) -> int:
    """Time a papermill sweep of the quickstart (2 x 2 points) and print its phases."""
    from workbench.stack import stack_dir
    from workbench.sweep import NotebookSweep

    grid = {"pool_size": [5, 20], "workers": [1, 2], "duration": [duration]}
    points = 4
    with tempfile.TemporaryDirectory() as home:
        os.environ["WORKBENCH_STACK_DIR"] = str(stack_dir())  # the usual (seeded) stack folder
        os.environ["WORKBENCH_HOME"] = home  # runs, sweeps and reports of this benchmark only
        started = time.time()
        sweep = NotebookSweep("01_quickstart", grid)
        sweep.run(users=users, progress=False)
        wall = time.time() - started
        executed = sorted(sweep.folder.glob("[!.]*.ipynb"), key=lambda p: p.stat().st_mtime)
        notebooks = [json.loads(p.read_text()) for p in executed]
        store = Store(Path(home) / "data" / "runs")
        timings = [store.load(run_id).manifest["timings"] for run_id in store.ids()]
        run_sizes = [
            sum(f.stat().st_size for f in store.path(run_id).iterdir()) for run_id in store.ids()
        ]
    spans = [_span(nb) for nb in notebooks]
    first_start = spans[0][0]
    once = first_start - started  # stack start (and seed), kernel start and imports
    steady = (wall - once) / points
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(points - 1)] + [
        started + wall - spans[-1][1]
    ]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    cells = [_cells(nb) for nb in notebooks]
    run_cell = mean([c["run"] for c in cells])
    start, load = (
        mean([t["service_start_s"] for t in timings]),
        mean([t["load_s"] for t in timings]),
    )
    stop = mean([t.get("service_stop_s", 0.0) for t in timings])
    measured = duration + QUICKSTART_WARMUP_S
    rows = [
        ("service start (+ load workers)", start),
        ("warm-up", QUICKSTART_WARMUP_S),
        ("load engine start/drain", load - measured),
        ("service stop", stop),
        ("sampling, attribution, store", run_cell - start - load - stop),
        ("plots and tables (other cells)", mean([c["other"] for c in cells])),
        ("kernel reset, papermill, copies", mean(gaps)),
    ]
    print(f"points                                 {points}")
    print(f"measured seconds per point             {measured:.2f} ({duration:g} + warm-up)")
    print(f"wall seconds                           {wall:.2f}")
    print(f"  once: stack, kernel start, imports   {once:.2f}")
    print(f"wall seconds per point (after once)    {steady:.2f}")
    for label, seconds in rows:
        print(f"  {label:<36} {seconds:5.2f}")
    print(f"stored run on disk (mean)              {mean(run_sizes) / 1000:.0f} KB")
    overhead = steady - measured
    verdict = "met" if overhead <= PAPERMILL_GOAL_S else "NOT met"
    print(f"overhead per point (after once)        {overhead:.2f} s  ", end="")
    print(f"(goal <= {PAPERMILL_GOAL_S:g} s: {verdict})")
    print(f"overhead per point (whole sweep)       {wall / points - measured:.2f} s")
    return 0


def _span(notebook: dict) -> tuple[float, float]:  # type: ignore[type-arg]
    """Epoch seconds at which papermill started and ended a notebook."""
    from datetime import datetime

    meta = notebook["metadata"]["papermill"]
    return (
        datetime.fromisoformat(meta["start_time"]).timestamp(),
        datetime.fromisoformat(meta["end_time"]).timestamp(),
    )


def _cells(notebook: dict) -> dict[str, float]:  # type: ignore[type-arg]
    """Seconds of the cell that runs the experiment, and of all the other cells."""
    run = other = 0.0
    for cell in notebook["cells"]:
        seconds = cell["metadata"].get("papermill", {}).get("duration") or 0.0
        if cell["cell_type"] != "code":
            continue
        if ".run(" in "".join(cell["source"]):
            run += seconds
        else:
            other += seconds
    return {"run": run, "other": other}


if __name__ == "__main__":
    sys.exit(main())
