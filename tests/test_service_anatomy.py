"""The latency anatomy of the service: stage timings, their bulk flush, and each stage on a real service."""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.utils import floatToGoString

from service import anatomy, metrics
from service.anatomy import Stage, timed
from service.batcher import Batcher
from service.cache import KEY_PREFIX
from service.settings import ServiceSettings
from tests._prom import metric
from workbench.launcher import ServiceProcess
from workbench.stack import Stack


def _count(text: str, stage: str) -> float:
    return metric(text, "anatomy_seconds_count", stage=stage)


def _sum(text: str, stage: str) -> float:
    return metric(text, "anatomy_seconds_sum", stage=stage)


def test_a_bulk_flush_exposes_what_one_observation_at_a_time_would() -> None:
    recorder = anatomy.Recorder()
    before = generate_latest().decode()
    timings = anatomy.Timings()
    timings.add(Stage.QUERY, 0.003)
    timings.add(Stage.L2, 0.0004)
    for _ in range(5):
        recorder.record(timings, total=0.004)
    assert _count(generate_latest().decode(), "query") == _count(before, "query")  # not yet
    recorder.flush()
    after = generate_latest().decode()
    assert _count(after, "query") - _count(before, "query") == 5
    assert _sum(after, "query") - _sum(before, "query") == pytest.approx(0.015)
    assert _count(after, "l2") - _count(before, "l2") == 5
    assert _count(after, "batcher") == _count(before, "batcher")  # a stage not gone through
    # the accounted series is the sum of the stages: 3.4 ms, in the bucket ending at 3.98 ms
    assert _sum(after, "accounted") - _sum(before, "accounted") == pytest.approx(5 * 0.0034)
    le = floatToGoString(anatomy.BUCKETS[bisect.bisect_left(anatomy.BUCKETS, 0.0034)])
    assert le == "0.003981071705534973"
    gained = metric(after, "anatomy_seconds_bucket", stage="accounted", le=le) - metric(
        before, "anatomy_seconds_bucket", stage="accounted", le=le
    )
    assert gained == 5


def test_timed_blocks_add_to_the_current_request_only() -> None:
    async def request(stage: Stage, seconds: float) -> anatomy.Timings:
        timings = anatomy.begin()
        with timed(stage):
            await asyncio.sleep(seconds)
        return timings

    async def main() -> list[anatomy.Timings]:
        return list(await asyncio.gather(request(Stage.QUERY, 0.02), request(Stage.UPSTREAM, 0.01)))

    first, second = asyncio.run(main())
    index = {stage: i for i, stage in enumerate(anatomy.STAGES)}
    assert first.spent[index[Stage.QUERY]] >= 0.02 and first.spent[index[Stage.UPSTREAM]] == 0
    assert second.spent[index[Stage.UPSTREAM]] >= 0.01 and second.spent[index[Stage.QUERY]] == 0


def test_a_timed_request_leaves_no_collected_object_behind_and_ends_with_its_timings() -> None:
    # Objects a request leaves alive until its task is freed (a ContextVar's new mapping did)
    # pushed bursts of requests past the collector's gen0 threshold: ~20 µs per L1 hit.
    async def request() -> tuple[int, anatomy.Timings | None]:
        gc.disable()  # no collection resets the allocation count in between
        try:
            before = gc.get_count()[0]
            timings = anatomy.begin()
            with timed(Stage.L1):
                assert anatomy.current() is timings
            anatomy.end()
            del timings
            return gc.get_count()[0] - before, anatomy.current()
        finally:
            gc.enable()

    left, after = asyncio.run(request())
    assert left <= 0 and after is None
    with timed(Stage.L1) as block:  # outside a task: nothing timed, nothing to fail
        assert block.timings is None


def test_a_batched_lookup_carries_its_batch_query_and_a_lone_one_waits_for_nothing() -> None:
    index = {stage: i for i, stage in enumerate(anatomy.STAGES)}

    async def fetch(keys: list[int]) -> dict[int, int]:
        with timed(Stage.QUERY):
            await asyncio.sleep(0.01)
        return {key: key * 2 for key in keys}

    async def lookup(batcher: Batcher[int, int], key: int) -> tuple[int | None, anatomy.Timings]:
        timings = anatomy.begin()
        return await batcher.load(key), timings

    async def main(interval: float, n: int) -> list[tuple[int | None, anatomy.Timings]]:
        batcher: Batcher[int, int] = Batcher(fetch, interval=interval)
        try:
            return list(await asyncio.gather(*(lookup(batcher, k) for k in range(n))))
        finally:
            await batcher.close()

    together = asyncio.run(main(0.0, 20))
    assert [value for value, _ in together] == [k * 2 for k in range(20)]
    for _, timings in together:  # every lookup waited for the one query of its batch
        assert timings.spent[index[Stage.QUERY]] >= 0.01
        assert timings.spent[index[Stage.BATCHER]] < 0.005
    ((_, alone),) = asyncio.run(main(0.0, 1))
    ((_, timer),) = asyncio.run(main(0.03, 1))
    assert alone.spent[index[Stage.BATCHER]] < 0.005  # sent on the next loop iteration
    assert timer.spent[index[Stage.BATCHER]] >= 0.03  # a fixed interval waits it out alone


@pytest.fixture(scope="module")
def plain(stack: Stack) -> Iterator[ServiceProcess]:
    """Naive settings with a pool big enough that nobody waits for a connection."""
    with ServiceProcess(ServiceSettings.naive().replace(pool_size=40), stack) as svc:
        yield svc


@pytest.fixture(scope="module")
def cached(stack: Stack) -> Iterator[ServiceProcess]:
    """One uvicorn worker with batcher and multi-level cache."""
    settings = ServiceSettings.optimized().replace(server="uvicorn", workers=1, preload=False)
    with ServiceProcess(settings, stack) as svc:
        yield svc


@pytest.fixture(scope="module")
def one_connection(stack: Stack) -> Iterator[ServiceProcess]:
    """Naive settings with a single pooled connection and no overflow."""
    settings = ServiceSettings.naive().replace(pool_size=1, max_overflow=0)
    with ServiceProcess(settings, stack) as svc:
        yield svc


def _flushed(svc: ServiceProcess) -> str:
    time.sleep(2 * metrics.FLUSH_INTERVAL)  # the service flushes its anatomy in bulk
    return svc.metrics()


def _forget(stack: Stack, ids: range) -> None:
    """Drop the ids' entries from L2 (other tests of the session may have cached them)."""
    client = redis.Redis.from_url(stack.redis)
    try:
        client.delete(*(f"{KEY_PREFIX}user:{i}" for i in ids))
    finally:
        client.close()


def _concurrently(url: str, ids: range, *, concurrency: int) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
            answers = await asyncio.gather(*(client.get(f"{url}/users/{i}") for i in ids))
        assert all(answer.status_code == 200 for answer in answers)

    asyncio.run(main())


@pytest.mark.slow
def test_the_batcher_stage_appears_only_with_the_batcher_on(
    plain: ServiceProcess, cached: ServiceProcess, stack: Stack
) -> None:
    _forget(stack, range(1200, 1240))
    for svc in (plain, cached):
        _concurrently(svc.url, range(1200, 1240), concurrency=8)
    assert _count(_flushed(plain), "batcher") == 0
    assert _count(_flushed(cached), "batcher") >= 40
    assert _count(plain.metrics(), "query") >= 40  # the plain service is timed too


@pytest.mark.slow
def test_l2_time_only_on_l1_misses(cached: ServiceProcess, stack: Stack) -> None:
    _forget(stack, range(1311, 1312))
    before = _flushed(cached)
    assert httpx.get(f"{cached.url}/users/1311").status_code == 200  # a miss: L2 get + set
    middle = _flushed(cached)
    assert _count(middle, "l2") - _count(before, "l2") == 1
    assert _count(middle, "query") - _count(before, "query") == 1
    for _ in range(3):  # hits in L1: no Redis, no database
        assert httpx.get(f"{cached.url}/users/1311").status_code == 200
    after = _flushed(cached)
    assert _count(after, "l2") == _count(middle, "l2")
    assert _count(after, "query") == _count(middle, "query")
    assert _count(after, "l1") - _count(middle, "l1") == 3
    assert _count(after, "total") - _count(middle, "total") == 3


@pytest.mark.slow
def test_pool_wait_grows_when_one_connection_serves_many(
    plain: ServiceProcess, one_connection: ServiceProcess
) -> None:
    waits = {}
    for name, svc in (("plain", plain), ("one", one_connection)):
        # a first burst opens the pool's connections (the checkout stage counts opening one)
        _concurrently(svc.url, range(1500, 1564), concurrency=32)
        before = _flushed(svc)
        _concurrently(svc.url, range(1500, 1564), concurrency=32)
        after = _flushed(svc)
        requests = _count(after, "total") - _count(before, "total")
        assert requests == 64
        waits[name] = (_sum(after, "pool") - _sum(before, "pool")) / requests
    # 32 requests queue for one connection: each waits for the queries ahead of it
    assert waits["one"] > 5 * waits["plain"]
    assert waits["one"] > 0.002


@pytest.mark.slow
def test_without_anatomy_nothing_is_timed(stack: Stack) -> None:
    settings = ServiceSettings.naive().replace(anatomy=False)
    with ServiceProcess(settings, stack) as svc:
        _concurrently(svc.url, range(10, 20), concurrency=4)
        assert _count(_flushed(svc), "total") == 0
