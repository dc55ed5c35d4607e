"""A sweep on a Dask LocalCluster of bench workers against the same sweep here; prints the ratio.

`.venv/bin/python benchmarks/cluster_sweep.py --points 4 --workers 2 --duration 2` runs the
sweep here, then twice on plain workers (each sweep's agents import, then start their stack),
then twice on workers started with `--preload workbench.cluster` (each keeps an idle agent, its
imports done, so a sweep's agents only start their stack). For each it prints the whole wall
time, its phases (lead-in: the sweep's start to the first run's; the points' span; tail: the
last run's end to the sweep's end), the runs' mean length and the ratio to the sweep here.

The workers attach to this machine's stack by its URLs (as tests/test_cluster.py does) unless
`--embedded`: then each starts its own stack, as a benchmark host does. The points are light on
CPU (one uvicorn worker, an open-loop rate), so that two "hosts" on one machine disturb each
other little; with n hosts of their own a sweep of many points tends to 1/n of its time here.
Not a test: it prints what one run measured on this machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import Sweep


@dataclass(frozen=True)
class Timed:
    """One sweep's wall time and its phases (s)."""

    label: str
    wall: float
    lead_in: float
    span: float
    tail: float
    busy: float
    points: int


def main(argv: list[str] | None = None) -> int:
    """Time the sweep here and on the cluster; print phases and ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=4, help="grid points (pool_size values)")
    parser.add_argument("--workers", type=int, default=2, help="bench workers of the cluster")
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point")
    parser.add_argument("--rate", type=float, default=50.0, help="open-loop requests per second")
    parser.add_argument("--users", type=int, default=2_000, help="seeded users")
    parser.add_argument("--embedded", action="store_true", help="each worker starts its stack")
    args = parser.parse_args(argv)
    base = Experiment(
        settings=ServiceSettings(),
        connections=4,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        seed=1,
    )

    def sweep() -> Sweep:
        return Sweep({"pool_size": [4 + 2 * i for i in range(args.points)]}, base=base)

    folder = Path(tempfile.mkdtemp(prefix="workbench-bench-cluster-"))
    folder.chmod(0o755)  # the embedded PostgreSQL's unprivileged user reaches its folder
    os.environ["WORKBENCH_STACK_DIR"] = str(folder / "stacks")  # the workers inherit it
    try:
        with Stack(users=args.users, root=folder / "here", progress=lambda _: None) as stack:
            given = Stack(
                database_url=stack.database_url,
                redis_url=stack.redis_url,
                upstream_url=stack.upstream_url,
                users=args.users,
            )
            there = Stack(users=args.users) if args.embedded else given
            here = timed(
                "here", folder, lambda store: sweep().run(stack, store=store, progress=False)
            )

            def run(store: Store, cluster: object) -> object:
                return sweep().run(there, store=store, progress=False, cluster=cluster)

            rows = [here]
            for preload in (False, True):
                rows += on_cluster(args, folder, run, preload=preload)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"{args.points} points of {args.duration:g} s (+{args.warmup:g} s warm-up), "
        f"{args.workers} workers, {'embedded stacks' if args.embedded else 'one stack by URL'}"
    )
    print(
        f"{'sweep':<34} {'wall':>6} {'lead-in':>8} {'span':>6} {'tail':>6} {'per point':>9} {'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row.label:<34} {row.wall:6.1f} {row.lead_in:8.1f} {row.span:6.1f} {row.tail:6.1f} "
            f"{row.busy / row.points:9.1f} {row.wall / here.wall:6.2f}"
        )
    print(f"ideal ratio with {args.workers} workers: {1 / args.workers:.2f}")
    return 0


def on_cluster(
    args: argparse.Namespace,
    folder: Path,
    run: Callable[[Store, object], object],
    *,
    preload: bool,
) -> list[Timed]:
    """The sweep twice on a new LocalCluster (without or with the preload that keeps agents idle)."""
    from distributed import Client, LocalCluster

    from workbench.cluster import wait_spare

    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            resources={"bench": 1},
            dashboard_address=":0",
            preload=["workbench.cluster"] if preload else None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        rows = []
        for again in (False, True):
            client.run(wait_spare)  # the idle agents' imports are no sweep's time
            label = (
                f"{'preloaded' if preload else 'plain'} workers, {'2nd' if again else '1st'} sweep"
            )
            rows.append(timed(label, folder, lambda store: run(store, cluster)))
    return rows


def timed(label: str, folder: Path, sweep: Callable[[Store], object]) -> Timed:
    """Run a sweep into a store of its own; its phases."""
    store = Store(folder / "runs" / label.replace(" ", "-"))
    started = time.time()
    sweep(store)
    ended = time.time()
    windows = []
    for run_id in store.ids():
        manifest = store.load(run_id).manifest
        windows.append(
            tuple(
                datetime.fromisoformat(manifest[k]).timestamp()
                for k in ("started_at", "finished_at")
            )
        )
    first = min(start for start, _ in windows)
    last = max(end for _, end in windows)
    return Timed(
        label, ended - started, first - started, last - first, ended - last,
        sum(end - start for start, end in windows), len(windows),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
