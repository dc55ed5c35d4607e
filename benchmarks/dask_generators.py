"""Distributed generation on a Dask LocalCluster against local engine runs; prints measured ratios.

Both load the loopback test server (tests/load_servers.py) at the same open-loop rates with the
same number of generators. Not a test: it prints what one run measured on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distributed import Client, LocalCluster  # noqa: E402

from tests.load_servers import serve  # noqa: E402
from workbench.load import LoadResult, run_load  # noqa: E402


def _row(label: str, result: LoadResult, wall: float) -> str:
    lat = result.percentiles_ms("latency")
    return (
        f"{label:<22} {result.asked_rate or 0:>8,.0f} {result.throughput_rps:>10,.1f} "
        f"{lat['p50']:>8.2f} {lat['p99']:>8.2f} {wall:>7.2f} "
        f"{'' if result.clock_skew_ms is None else f'{result.clock_skew_ms:.2f}':>8}"
    )


def main() -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", default="400,2000", help="comma-separated req/s")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--generators", type=int, default=2)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    n = args.generators
    t0 = time.monotonic()
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        print(f"LocalCluster with {n} worker processes up in {time.monotonic() - t0:.2f} s")
        print(f"{'run':<22} {'asked':>8} {'achieved':>10} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'wall s':>7} {'skew ms':>8}")  # fmt: skip
        for rate in rates:
            options = {
                "rate": rate,
                "duration": args.duration,
                "warmup": 0.5,
                "connections": 16,
                "processes": n,
                "progress": False,
            }
            results = {}
            for label, cluster_arg in (("local processes", None), ("dask LocalCluster", client)):
                with serve() as (url, _):
                    start = time.monotonic()
                    result = run_load(url + "/", cluster=cluster_arg, **options)  # type: ignore[arg-type]
                    wall = time.monotonic() - start
                results[label] = result
                print(_row(f"{label} x{n}", result, wall))
            local, dask = results["local processes"], results["dask LocalCluster"]
            print(
                f"  achieved dask/local = {dask.throughput_rps / local.throughput_rps:.3f}, "
                f"requests {dask.requests} = sum of workers {sum(dask.worker_requests)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
