"""Waker: deadlines kept without busy-waiting the event loop."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from workbench.load._timer import MIN_GAP_S, Waker


def _pace(rate: float, seconds: float) -> tuple[list[float], float]:
    """Wake for `rate` evenly spaced deadlines a second; return each wake's lag and the CPU used."""

    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        lags: list[float] = []
        start = time.monotonic() + 0.01
        deadlines = iter(start + i / rate for i in range(int(rate * seconds)))
        nxt = [next(deadlines)]

        def fired() -> None:
            now = time.monotonic()
            while nxt[0] <= now:
                lags.append(now - nxt[0])
                try:
                    nxt[0] = next(deadlines)
                except StopIteration:
                    done.set_result(None)
                    return
            waker.at(nxt[0])

        waker = Waker(loop, fired)
        cpu = time.process_time()
        waker.at(nxt[0])
        await asyncio.wait_for(done, seconds + 5)
        waker.close()
        return lags, time.process_time() - cpu

    return uvloop.run(main())


def test_paces_thousands_a_second_without_spinning() -> None:
    rate, seconds = 2000.0, 1.0
    lags, cpu = _pace(rate, seconds)
    assert len(lags) == rate * seconds
    assert min(lags) >= 0  # never before its deadline
    # a call_later loop with sub-millisecond gaps spins: ~1.0 CPU-second per second here
    assert cpu < 0.5 * seconds


@pytest.mark.alone
def test_sparse_deadlines_are_kept_to_a_fraction_of_a_millisecond() -> None:
    lags, _ = _pace(200.0, 0.5)
    lags.sort()
    assert lags[len(lags) // 2] < MIN_GAP_S + 0.0005


def test_close_stops_callbacks() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        calls = []
        waker = Waker(loop, lambda: calls.append(1))
        waker.at(time.monotonic() + 0.02)
        waker.close()
        await asyncio.sleep(0.05)
        return len(calls)

    assert uvloop.run(main()) == 0
