"""The `workbench load URL` command: closed loop without --rate, open loop with it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from workbench._errors import InputError, positive_int
from workbench.load._distributed import check_cluster
from workbench.load._engine import run_load
from workbench.load._plan import KEEPALIVE_IDLE_S, LoadPlan
from workbench.load._profile import ARRIVALS
from workbench.load._result import LoadFailed
from workbench.load._slo import SLO
from workbench.load._transport import TRANSPORTS

T = TypeVar("T")
EXIT_OK = 0
EXIT_SLO_BROKEN = 1
EXIT_BAD_INPUT = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `workbench load` to a parser."""
    parser.add_argument("url", help="target URL (loopback unless --allow-remote)")
    parser.add_argument("--connections", default="64", help="connections (a cap in open loop)")
    parser.add_argument("--rate", default=None, help="requests/s; open loop when given")
    parser.add_argument("--arrival", default="constant", help=f"one of {', '.join(ARRIVALS)}")
    parser.add_argument("--duration", default="10", help="measured seconds")
    parser.add_argument("--warmup", default="1", help="seconds before measuring (0 allowed)")
    parser.add_argument("--processes", default=None, help="worker processes (default: spare CPUs)")
    parser.add_argument("--scenario", default=None, help="scenario JSON file")
    parser.add_argument(
        "--ids", default=None, help="{id} in the URL path is uniform over 1..IDS (default 1000)"
    )
    parser.add_argument("--timeout", default="10", help="seconds before a request times out")
    parser.add_argument("--slo", default=None, help="e.g. p95=50ms,p99=120ms,errors=0.1%%")
    parser.add_argument("--json", default=None, help="write the summary as JSON to this path")
    parser.add_argument("--allow-remote", action="store_true", help="allow non-loopback targets")
    parser.add_argument("--transport", default="raw", help=f"one of {', '.join(TRANSPORTS)}")
    parser.add_argument(
        "--keepalive-idle",
        default=str(KEEPALIVE_IDLE_S),
        help="seconds a connection may sit idle and be reused (the target's keep-alive timeout)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-second progress lines")
    parser.add_argument(
        "--cluster", default=None, help="Dask scheduler address (tcp://host:8786) to generate on"
    )


def main(args: argparse.Namespace) -> int:
    """Run `workbench load`; 0 ok, 1 SLO broken, 2 bad input, 3 a worker died, 130 interrupted."""
    try:
        slo = SLO.parse(args.slo) if args.slo is not None else None
        if args.cluster is not None:
            check_cluster(args.cluster)
        # with a cluster, processes is checked against its workers once connected
        plan = LoadPlan.build(
            args.url,
            connections=_integer("connections", args.connections),
            duration=_number("duration", args.duration),
            rate=_optional(_number, "rate", args.rate),
            arrival=args.arrival,
            warmup=_number("warmup", args.warmup),
            processes=_optional(_integer, "processes", args.processes),
            scenario=args.scenario,
            id_max=_optional(_count, "ids", args.ids),
            timeout=_number("timeout", args.timeout),
            transport=args.transport,
            allow_remote=bool(args.allow_remote),
            progress=not args.quiet,
            keepalive_idle=_number("keepalive_idle", args.keepalive_idle),
            cluster=args.cluster is not None,
        )
        if args.json is not None and not Path(args.json).parent.exists():
            raise InputError("json", f"folder {Path(args.json).parent} does not exist")
    except InputError as exc:
        print(f"workbench load: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = run_load(plan, cluster=args.cluster)
    except KeyboardInterrupt as exc:
        partial = getattr(exc, "result", None)  # LoadInterrupted carries what was measured
        if partial is not None:
            print(partial.text(), flush=True)
            if args.json is not None:
                Path(args.json).write_text(json.dumps(partial.summary(), indent=2) + "\n")
        print("workbench load: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LoadFailed as exc:  # a worker died: what was measured until then is still shown
        if exc.result is not None:
            print(exc.result.text(), flush=True)
            if args.json is not None:
                Path(args.json).write_text(json.dumps(exc.result.summary(), indent=2) + "\n")
        print(f"workbench load: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except InputError as exc:  # e.g. a --cluster scheduler that cannot be reached
        print(f"workbench load: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(result.text(), flush=True)
    if args.json is not None:
        Path(args.json).write_text(json.dumps(result.summary(), indent=2) + "\n")
    if slo is not None:
        broken = slo.check(result)
        if broken:
            print("SLO broken: " + "; ".join(broken), flush=True)
            return EXIT_SLO_BROKEN
        print("SLO met", flush=True)
    return EXIT_OK


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(name, f"must be a number, got {text!r}") from None


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(name, f"must be an integer, got {text!r}") from None


def _count(name: str, text: str) -> int:
    return positive_int(name, _integer(name, text))


def _optional(parse: Callable[[str, str], T], name: str, text: str | None) -> T | None:
    return None if text is None else parse(name, text)
