"""Capacity of the naive and the optimized presets, their ratio, and what limited each.

Run: `.venv/bin/python benchmarks/capacity.py --duration 3`. In the same run it also measures
the ladder benchmark's figure (closed-loop max throughput, benchmarks/ladder.py, engine and wrk)
for both presets and prints how far the two ratios are apart: they should agree within the
noise, and the bottlenecks should differ (naive: database pool; optimized: cache misses / CPU).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from service.settings import ServiceSettings
from workbench import anatomy
from workbench.capacity import Capacity, estimate, search
from workbench.compare import interval, resample
from workbench.load import SLO
from workbench.stack import Stack

sys.path.insert(0, str(Path(__file__).parent))
from ladder import run_ladder  # noqa: E402  (a sibling script, not a package)


def main(argv: list[str] | None = None) -> int:
    """Search both presets' capacity under one SLO and print the ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slo", default="p95=50ms,errors=1%")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per step")
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="bisect until (broke - held) / held <= this"
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--path", default="/users/{id}")
    parser.add_argument("--no-ladder", action="store_true", help="skip the closed-loop ratio")
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="searches per preset, interleaved; > 1 prints the median and its bootstrap 95%% CI "
        "(near the edge one search is not enough: optimized once gave 2,875, 3,375 and 4,375)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    found: dict[str, Capacity] = {}
    searches: dict[str, list[Capacity]] = {"naive": [], "optimized": []}
    closed: dict[str, float] = {}
    closed_p95: dict[str, float] = {}
    with Stack(users=args.users) as stack:
        for round_ in range(1, args.repeats + 1):
            for name in ("naive", "optimized"):
                settings = getattr(ServiceSettings, name)()
                print(f"--- {name}" + (f" ({round_}/{args.repeats})" if args.repeats > 1 else ""),
                      flush=True)  # fmt: skip
                searches[name].append(search(
                    stack, settings=settings, slo=args.slo, path=args.path,
                    duration=args.duration, tolerance=args.tolerance,
                ))  # fmt: skip
        medians = {name: estimate(runs) for name, runs in searches.items()}
        for name, runs in searches.items():  # the search nearest the median speaks for the preset
            found[name] = min(runs, key=lambda c: abs((c.max_rate or 0.0) - medians[name][0]))
        if not args.no_ladder:
            print("--- ladder figure: closed-loop max throughput, 64 connections", flush=True)
            generators = ("engine", "wrk") if shutil.which("wrk") else ("engine",)
            presets = [(name, getattr(ServiceSettings, name)()) for name in ("naive", "optimized")]
            rows = run_ladder(
                stack, steps=presets, endpoints=[args.path], duration=max(3.0, args.duration),
                generators=generators,
            )  # fmt: skip
            closed = {f"{r.step}/{r.generator}": r.point.rps for r in rows}
            closed_p95 = {f"{r.step}/{r.generator}": r.point.p95_ms for r in rows}
    print()
    for name, capacity in found.items():
        rate = f"{capacity.max_rate:,.0f}" if capacity.max_rate else "none"
        broke = f"{capacity.broke_at:,.0f}" if capacity.broke_at else "never"
        print(
            f"{name:<10} max {rate:>8} req/s under {args.slo} (broke at {broke}); "
            f"bottleneck: {capacity.bottleneck.get('kind')}"
        )
        for run, what in ((capacity.held, "at capacity"), (capacity.broke, "where it broke")):
            if run is not None and not run.anatomy().empty:
                opened = (
                    run.server["connects_per_s"].mean() if "connects_per_s" in run.server else 0
                )
                print(
                    f"    {what}: {anatomy.sentence(run.anatomy_table)} "
                    f"New database connections: {opened:.1f}/s."
                )
    if args.repeats > 1:
        for name, (median, low, high) in medians.items():
            rates = ", ".join(f"{c.max_rate or 0:,.0f}" for c in searches[name])
            print(f"{name:<10} median {median:>8,.0f} req/s, 95% CI [{low:,.0f}, "
                  f"{high if high is None else f'{high:,.0f}'}] over {args.repeats} searches ({rates})")  # fmt: skip
    _explain(found, closed, closed_p95, slo=SLO.parse(args.slo))
    naive, optimized = medians["naive"][0], medians["optimized"][0]
    if naive and optimized:
        ratio = optimized / naive
        what = "medians of the searches" if args.repeats > 1 else "open loop"
        low, high = _ratio_ci(searches)
        ci = (
            f", 95% CI [{low:.2f}, {high:.2f}] (rounds resampled, paired)"
            if args.repeats > 1
            else ""
        )
        print(f"optimized / naive = {ratio:.2f} (capacity under the SLO, {what}){ci}")
        for gen in ("engine", "wrk"):
            if f"naive/{gen}" in closed:
                ladder_ratio = closed[f"optimized/{gen}"] / closed[f"naive/{gen}"]
                print(
                    f"optimized / naive = {ladder_ratio:.2f} (ladder: closed-loop max throughput, "
                    f"{gen}); capacity ratio / ladder ratio = {ratio / ladder_ratio:.2f}"
                )
    return 0


def _ratio_ci(
    searches: dict[str, list[Capacity]], *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap 95% interval of optimized / naive (ratio of medians): whole rounds resampled,
    so that each round's two searches, run side by side in time, stay paired."""
    naive, optimized = (
        np.array([c.max_rate or np.nan for c in searches[name]], dtype=float)
        for name in ("naive", "optimized")
    )
    draws = resample(len(naive), n_boot=n_boot, rng=np.random.default_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.nanmedian(optimized[draws], axis=1) / np.nanmedian(naive[draws], axis=1)
    return interval(ratios)


def _explain(
    found: dict[str, Capacity],
    closed: dict[str, float],
    closed_p95: dict[str, float],
    *,
    slo: SLO,
) -> None:
    """Why closed-loop max throughput and capacity under the SLO give different ratios.

    A closed loop over 64 connections finds the rate at which the service is busy all the time,
    whatever the latency then is (Little's law: 64 connections / rate). Capacity is the rate
    whose tail still holds the SLO. For each preset the share of its closed-loop rate that holds
    the SLO (capacity / closed) is printed beside the P95 the closed loop ran at: a preset whose
    closed-loop P95 is far above the SLO keeps a smaller share, and the two ratios differ by
    exactly the ratio of those shares.
    """
    if not closed:  # --no-ladder: nothing to compare with
        return
    limit = dict(slo.latency_ms).get("p95")
    gen = "wrk" if "naive/wrk" in closed else "engine"
    print(f"\nclosed loop ({gen}, 64 connections) against capacity under {slo}:")
    shares = {}
    for name, capacity in found.items():
        rate, p95 = closed.get(f"{name}/{gen}"), closed_p95.get(f"{name}/{gen}")
        if not rate or not capacity.max_rate:
            continue
        shares[name] = capacity.max_rate / rate
        beyond = f" ({p95 / limit:.1f}x the SLO's {limit:g} ms)" if limit and p95 else ""
        print(
            f"  {name:<10} closed {rate:>8,.0f} req/s at P95 {p95:7.1f} ms{beyond}; "
            f"capacity {capacity.max_rate:>8,.0f} = {shares[name]:.2f} of it"
        )
    if len(shares) == 2:
        print(
            f"  capacity ratio = closed ratio x {shares['optimized']:.2f} / {shares['naive']:.2f}: "
            "each preset keeps the share of its saturated rate at which its tail still holds"
        )


if __name__ == "__main__":
    sys.exit(main())
