"""The latency anatomy's own code per request, in-process: what `hot_path.py`'s on/off gap is made of.

Run: `.venv/bin/python benchmarks/anatomy_cost.py`. An L1-hit request's anatomy calls (the
middleware's begin/end and finish, the endpoint wrapper, two timed blocks) run in a task of
their own on uvloop, as uvicorn runs each request, with the anatomy on and off, against a task
that does none of it; then each call alone. Compare "on - off" with `hot_path.py`'s anatomy on/off
CPU per request: the rest of that gap is outside the anatomy's code (the stamping protocol, the
service's larger working set).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service import anatomy  # noqa: E402
from service.anatomy import Stage, handler, timed  # noqa: E402


async def _endpoint() -> int:
    with timed(Stage.L1):
        pass
    with timed(Stage.SERIALIZE):
        pass
    return 1


_WRAPPED = handler(_endpoint)


async def _request(*, on: bool) -> None:
    """What the middleware and the route do around an L1 hit, minus the hit itself."""
    start = time.perf_counter()
    timings = anatomy.begin() if on else None
    await _WRAPPED()
    ended = time.perf_counter()
    if timings is not None:
        anatomy.end()
        anatomy.RECORDER.finish(timings, received=start - 1e-5, started=start, ended=ended)


async def _bare() -> None:
    time.perf_counter()
    await _nothing()
    time.perf_counter()


async def _nothing() -> int:
    return 1


def per_request(make: Callable[[], Awaitable[None]], *, n: int, rounds: int) -> float:
    """Best µs per request over rounds, each request in a task of its own."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(n):
                await loop.create_task(make())  # type: ignore[arg-type]
            best = min(best, (time.perf_counter() - started) / n)
        return best * 1e6

    return uvloop.run(main())


def per_call(fn: Callable[[], object], *, n: int, rounds: int) -> float:
    """Best µs per call."""
    return 1e6 * min(timeit.repeat(fn, number=n, repeat=rounds)) / n


def main(argv: list[str] | None = None) -> int:
    """Print the anatomy's cost per request, whole and by call."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (the best is kept)")
    args = parser.parse_args(argv)
    n, rounds = args.requests, args.rounds
    bare = per_request(_bare, n=n, rounds=rounds)
    off = per_request(lambda: _request(on=False), n=n, rounds=rounds)
    on = per_request(lambda: _request(on=True), n=n, rounds=rounds)
    print(f"{'a task per request, nothing else':<44} {bare:6.2f} µs")
    print(f"{'  + wrapper and timed blocks, anatomy off':<44} {off:6.2f} µs  (+{off - bare:.2f})")
    print(f"{'  + anatomy on':<44} {on:6.2f} µs  (+{on - off:.2f})")
    print(f"anatomy on - off: {on - off:.2f} µs per request\n\nby call:")

    def block() -> None:
        with timed(Stage.L1):
            pass

    timings = anatomy.Timings()
    timings.entered, timings.left = 1.0, 2.0

    def finish() -> None:
        timings.spent = [0.0] * len(timings.spent)
        timings.spent[anatomy.STAGES.index(Stage.L1)] = 1e-5
        timings.spent[anatomy.STAGES.index(Stage.SERIALIZE)] = 3e-5
        anatomy.RECORDER.finish(timings, received=0.5, started=0.9, ended=2.1)

    calls = {
        "begin + end (a Timings per task)": lambda: (anatomy.begin(), anatomy.end()),
        "a timed block, anatomy off": block,
        "finish + record (5 stages, total, accounted)": finish,
    }

    async def by_call() -> None:  # in a running loop, as the service's calls are
        for label, fn in calls.items():
            print(f"  {label:<46} {per_call(fn, n=n, rounds=rounds):6.2f} µs")
        anatomy.begin()  # a timed request current from here: the block now times
        print(f"  {'a timed block, anatomy on':<46} {per_call(block, n=n, rounds=rounds):6.2f} µs")
        anatomy.end()

    uvloop.run(by_call())
    return 0


if __name__ == "__main__":
    sys.exit(main())
