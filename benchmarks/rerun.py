"""How soon a rerun in a kernel's kept stack measures: from the call to its first measured second.

`.venv/bin/python benchmarks/rerun.py --reruns 3` starts a stack, runs the quickstart's point
once (cold), then reruns it with a new service each time (`fresh_service=True`, what every rerun
did before services were kept) and with the kept service (the default). Per rerun it prints the
seconds from `experiment.run(...)` to the start of the measured window (after the warm-up) and to
the first measured second's report (what a live chart shows first), and the service's pid.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from workbench.experiment import Experiment
from workbench.load import progress
from workbench.notebook import KeptSession
from workbench.stack import Stack
from workbench.store import Store


def main(argv: list[str] | None = None) -> int:
    """Time reruns with a fresh service and with the kept one; print each and the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reruns", type=int, default=3, help="reruns of each kind")
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run")
    parser.add_argument("--users", type=int, default=10_000, help="seeded users")
    args = parser.parse_args(argv)
    experiment = Experiment(
        connections=16, duration=args.duration, warmup=args.warmup, name="rerun"
    )
    firsts: list[float] = []

    def first_second(event: object) -> bool:
        if isinstance(event, progress.Second) and event.index == 0:
            firsts.append(time.monotonic())
        return False

    table: dict[str, list[tuple[float, float]]] = {"fresh service": [], "kept service": []}
    with (
        tempfile.TemporaryDirectory() as folder,
        Stack(users=args.users, progress=lambda _: None) as stack,
        KeptSession() as session,
        progress.listening(first_second),
    ):
        store = Store(Path(folder))
        experiment.run(stack, store=store, session=session, progress=False)  # cold
        for kind in ("fresh service", "kept service"):
            for _ in range(args.reruns):
                called, called_wall = time.monotonic(), time.time()
                run = experiment.run(
                    stack, store=store, session=session, progress=False,
                    fresh_service=kind == "fresh service",
                )  # fmt: skip
                window = run.manifest["window_started_at"] - called_wall
                first = firsts[-1] - called
                table[kind].append((window, first))
                print(
                    f"{kind}: measuring after {window:.2f} s, first second reported after "
                    f"{first:.2f} s (service pid {run.manifest['service']['pid']}, reused "
                    f"{run.manifest['service']['reused']})",
                    flush=True,
                )
    for kind, rows in table.items():
        print(
            f"median, {kind}: measuring after {statistics.median(r[0] for r in rows):.2f} s, "
            f"first second after {statistics.median(r[1] for r in rows):.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
