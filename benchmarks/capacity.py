"""Capacity of the naive and the optimized presets, their ratio, and what limited each.

Run: `.venv/bin/python benchmarks/capacity.py --duration 3`. Compare the ratio with
benchmarks/ladder.py's optimized/naive ratio on the same machine: they should agree within
the noise, and the bottlenecks should differ (naive: database pool / event loop; optimized: CPU).
"""

from __future__ import annotations

import argparse
import sys

from service.settings import ServiceSettings
from workbench.capacity import search
from workbench.stack import Stack


def main(argv: list[str] | None = None) -> int:
    """Search both presets' capacity under one SLO and print the ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slo", default="p95=50ms,errors=1%")
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per step")
    parser.add_argument("--bisections", type=int, default=3)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--path", default="/users/{id}")
    args = parser.parse_args(argv)
    found = {}
    with Stack(users=args.users) as stack:
        for name in ("naive", "optimized"):
            settings = getattr(ServiceSettings, name)()
            print(f"--- {name}", flush=True)
            found[name] = search(
                stack, settings=settings, slo=args.slo, path=args.path, duration=args.duration,
                bisections=args.bisections,
            )  # fmt: skip
    print()
    for name, capacity in found.items():
        rate = f"{capacity.max_rate:,.0f}" if capacity.max_rate else "none"
        print(
            f"{name:<10} max {rate:>8} req/s under {args.slo}; bottleneck: {capacity.bottleneck.get('kind')}"
        )
    naive, optimized = found["naive"].max_rate, found["optimized"].max_rate
    if naive and optimized:
        print(f"optimized / naive = {optimized / naive:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
