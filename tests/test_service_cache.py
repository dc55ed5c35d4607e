"""The multi-level cache: L1 LRU/TTL, L2 in real Redis, pub/sub invalidation across processes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from service.cache import (
    KEY_PREFIX,
    L1Cache,
    MultiLevelCache,
    cached_endpoint,
    subscriber_client,
)
from service.settings import ServiceSettings
from tests._prom import metric
from workbench.faults import frozen
from workbench.launcher import ServiceProcess
from workbench.redis import EmbeddedRedis
from workbench.stack import Stack

CACHED = ServiceSettings(cache=True, serializer="orjson")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_l1_evicts_least_recently_used() -> None:
    l1 = L1Cache(max_size=2)
    l1.set("a", b"1", ttl=60)
    l1.set("b", b"2", ttl=60)
    assert l1.get("a") == b"1"  # a is now the most recent
    l1.set("c", b"3", ttl=60)
    assert "b" not in l1
    assert l1.get("a") == b"1" and l1.get("c") == b"3"
    assert len(l1) == 2


def test_l1_entries_expire_after_their_ttl() -> None:
    clock = FakeClock()
    l1 = L1Cache(max_size=10, clock=clock)
    l1.set("k", b"v", ttl=5)
    clock.now += 4.9
    assert l1.get("k") == b"v"
    clock.now += 0.2
    assert l1.get("k") is None
    assert len(l1) == 0


def test_l1_rejects_a_zero_size() -> None:
    with pytest.raises(ValueError, match="max_size"):
        L1Cache(max_size=0)


@contextlib.asynccontextmanager
async def _listening(
    stack: Stack, *options: dict[str, Any]
) -> AsyncIterator[list[MultiLevelCache]]:
    """One cache per options, each on Redis clients of its own and subscribed to invalidations."""
    clients: list[aioredis.Redis] = []
    caches: list[MultiLevelCache] = []
    for kwargs in options:
        redis, subscriber = (aioredis.Redis.from_url(stack.redis) for _ in range(2))
        clients += (redis, subscriber)
        caches.append(MultiLevelCache(redis=redis, subscriber=subscriber, **kwargs))
    tasks = [asyncio.create_task(cache.listen()) for cache in caches]
    try:
        for cache in caches:
            await asyncio.wait_for(cache.subscribed.wait(), 5)
        yield caches
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()


def test_l2_is_shared_and_invalidation_reaches_other_instances(stack: Stack) -> None:
    async def scenario() -> None:
        async with _listening(stack, {"l2_ttl": 30}, {"l2_ttl": 30}) as (a, b):
            key = f"test:{uuid.uuid4().hex}"
            await a.set(key, b"value")
            assert 0 < await a.redis.ttl(KEY_PREFIX + key) <= 30
            assert await b.get(key) == b"value"  # from L2
            assert key in b.l1  # ...and now in b's L1
            await a.invalidate([key])
            deadline = time.monotonic() + 2
            while key in b.l1 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert key not in b.l1
            assert await b.get(key) is None

    asyncio.run(scenario())


def test_a_read_racing_a_write_is_removed_by_the_second_round(stack: Stack) -> None:
    async def scenario() -> None:
        async with _listening(stack, {"repeat_after": 0.1}, {}) as (writer, reader):
            key = f"test:race:{uuid.uuid4().hex}"
            await writer.invalidate([key])
            await asyncio.sleep(0.02)
            await reader.set(key, b"old row read before the write")  # the late, stale fill
            assert await writer.get(key) is not None  # stale in L2 for now...
            await asyncio.sleep(0.3)
            assert key not in reader.l1  # ...until the second round
            assert await writer.get(key) is None
            await writer.close()

    asyncio.run(scenario())


def test_listener_resubscribes_after_redis_drops_it(stack: Stack) -> None:
    async def scenario() -> None:
        clients = [aioredis.Redis.from_url(stack.redis) for _ in range(3)]
        admin = clients[2]
        cache = MultiLevelCache(redis=clients[0], subscriber=clients[1], l2_ttl=30)
        task = asyncio.create_task(cache.listen(retry_delay=0.05))
        try:
            await asyncio.wait_for(cache.subscribed.wait(), 5)
            # Redis drops every subscriber connection, as when it restarts.
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            key = "test:after-reconnect"
            deadline = time.monotonic() + 5
            dropped = False
            while time.monotonic() < deadline and not dropped:
                cache.l1.set(key, b"stale", ttl=60)
                message = f'{{"origin":"someone-else","keys":["{key}"]}}'
                await admin.publish(cache.channel, message)
                await asyncio.sleep(0.05)
                dropped = key not in cache.l1
            assert dropped, "the listener did not come back after the connection was killed"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for client in clients:
                await client.aclose()

    asyncio.run(scenario())


def test_listener_notices_a_frozen_redis_and_resubscribes_after(stack: Stack) -> None:
    """A connection that stops answering (frozen server, half-open socket) is found by a PING."""

    async def scenario() -> None:
        subscriber = subscriber_client(stack.redis, timeout=0.3)
        other = aioredis.Redis.from_url(stack.redis)
        cache = MultiLevelCache(redis=other, subscriber=subscriber, l2_ttl=30)
        task = asyncio.create_task(
            cache.listen(retry_delay=0.05, health_check_interval=0.3, reply_timeout=0.3)
        )
        try:
            await asyncio.wait_for(cache.subscribed.wait(), 5)
            cache.l1.set("user:1", b"cached before the freeze", ttl=60)
            with frozen(stack, "redis"):
                await asyncio.sleep(1.5)
                noticed = not cache.subscribed.is_set()
            thawed = time.monotonic()
            await asyncio.wait_for(cache.subscribed.wait(), 5)
            back = time.monotonic() - thawed
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await subscriber.aclose()
            await other.aclose()
        assert noticed, "the listener still counted itself subscribed to a frozen Redis"
        assert back < 1.5, back  # resubscribed within a health-check round after the thaw
        assert "user:1" not in cache.l1  # invalidations may have been missed: L1 starts afresh

    asyncio.run(scenario())


def test_cached_endpoint_runs_the_function_once_and_not_for_none(stack: Stack) -> None:
    calls: list[int] = []

    class Holder:
        def __init__(self, cache: MultiLevelCache | None) -> None:
            self.cache = cache

    @cached_endpoint(ttl=60, key=lambda n: f"test:double:{n}:{RUN}")
    async def double(holder: object, n: int) -> bytes | None:
        calls.append(n)
        return None if n < 0 else str(2 * n).encode()

    async def scenario() -> None:
        client = aioredis.Redis.from_url(stack.redis)
        holder = Holder(MultiLevelCache(redis=client))
        try:
            assert await double(holder, 21) == b"42"
            assert await double(holder, 21) == b"42"
            assert await double(holder, -1) is None
            assert await double(holder, -1) is None
            assert await double(Holder(None), 21) == b"42"  # cache off: always runs
        finally:
            await client.aclose()

    RUN = uuid.uuid4().hex
    asyncio.run(scenario())
    assert calls == [21, -1, -1, 21]


@pytest.fixture(scope="module")
def pair(stack: Stack) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two cached service processes on the session's stack, shared by the tests that count on
    them from their own users' keys (metrics read as differences)."""
    with ServiceProcess(CACHED, stack) as a, ServiceProcess(CACHED, stack) as b:
        yield a, b


@pytest.mark.slow
def test_second_read_is_l1_hit_and_other_process_is_l2_hit(
    stack: Stack, pair: tuple[ServiceProcess, ServiceProcess]
) -> None:
    a, b = pair
    user = 101
    # Another run may have left this key in L2: start from a known state.
    _drop_l2(stack, f"user:{user}")
    page_a, page_b = a.metrics(), b.metrics()  # /health pings count too
    first = httpx.get(f"{a.url}/users/{user}")
    second = httpx.get(f"{a.url}/users/{user}")
    assert first.status_code == 200 and second.content == first.content
    page = a.metrics()
    assert _moved(page_a, page, "cache_hits_total", level="l1") == 1
    assert _moved(page_a, page, "cache_misses_total", level="l2") == 1
    assert _moved(page_a, page, "db_queries_total") == 1
    other = httpx.get(f"{b.url}/users/{user}")
    assert other.content == first.content
    page = b.metrics()
    assert _moved(page_b, page, "cache_hits_total", level="l2") == 1
    assert _moved(page_b, page, "db_queries_total") == 0


def _moved(before: str, after: str, name: str, **labels: str) -> float:
    """How much a counter of the service's /metrics grew between two pages."""
    return metric(after, name, **labels) - metric(before, name, **labels)


@pytest.mark.slow
def test_put_reaches_every_worker_within_100_ms(
    pair: tuple[ServiceProcess, ServiceProcess],
) -> None:
    a, b = pair
    page_a, page_b = a.metrics(), b.metrics()
    user = 102
    for svc in (a, b):  # both workers hold the user in L1
        httpx.get(f"{svc.url}/users/{user}")
        httpx.get(f"{svc.url}/users/{user}")
    name = f"Renamed {uuid.uuid4().hex[:8]}"
    with httpx.Client() as client:
        answer = client.put(f"{a.url}/users/{user}", json={"name": name})
        assert answer.status_code == 200 and answer.json()["name"] == name
        done = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.monotonic() - done < 1.0:
            for svc in (a, b):
                if (
                    svc.url not in seen
                    and client.get(f"{svc.url}/users/{user}").json()["name"] == name
                ):
                    seen[svc.url] = time.monotonic() - done
    assert len(seen) == 2, f"stale worker after 1 s: {seen}"
    assert max(seen.values()) < 0.1, seen
    assert _moved(page_a, a.metrics(), "cache_invalidations_sent_total") >= 1
    assert _moved(page_b, b.metrics(), "cache_invalidations_received_total") >= 1
    time.sleep(0.6)  # the second round, against reads that raced the write
    assert _moved(page_a, a.metrics(), "cache_invalidations_sent_total") == 2
    assert _moved(page_b, b.metrics(), "cache_invalidations_received_total") == 2


def _drop_l2(stack: Stack, key: str) -> None:
    import redis

    client = redis.Redis.from_url(stack.redis)
    client.delete(KEY_PREFIX + key)
    client.close()


@pytest.mark.slow
def test_workers_survive_a_redis_restart_and_resubscribe(stack: Stack, tmp_path: Path) -> None:
    # a folder the server user (nobody, under root) can reach: not pytest's 0700 tmp_path
    redis_server = EmbeddedRedis(stack.root / f"restart-{tmp_path.name}" / "redis")
    redis_server.start()
    try:
        own = Stack(
            database_url=stack.url,
            redis_url=redis_server.url,
            upstream_url=stack.upstream_url,
            users=stack.users,
        )
        with ServiceProcess(CACHED, own) as a, ServiceProcess(CACHED, own) as b:
            user = 103
            for svc in (a, b):
                assert httpx.get(f"{svc.url}/users/{user}").status_code == 200
            redis_server.stop()
            # Without Redis: /health says so, reads still work (L1, or the database).
            assert httpx.get(f"{a.url}/health").status_code == 503
            assert httpx.get(f"{a.url}/users/{user}").status_code == 200
            assert httpx.get(f"{b.url}/users/{user + 1}").status_code == 200
            redis_server.start()  # same port
            for svc in (a, b):
                _wait_for(partial(_subscriptions_at_least, svc, 2), what="resubscription")
            assert httpx.get(f"{a.url}/health").status_code == 200
            httpx.get(f"{b.url}/users/{user}")  # b holds the user in L1 again
            name = f"After restart {uuid.uuid4().hex[:6]}"
            assert httpx.put(f"{a.url}/users/{user}", json={"name": name}).status_code == 200
            _wait_for(
                lambda: httpx.get(f"{b.url}/users/{user}").json()["name"] == name,
                what="invalidation after the restart",
                timeout=0.5,
            )
    finally:
        redis_server.stop()


def _subscriptions_at_least(svc: ServiceProcess, count: int) -> bool:
    return metric(svc.metrics(), "cache_pubsub_subscriptions_total") >= count


def _wait_for(check: Callable[[], bool], *, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout:g} s")
        time.sleep(0.02)


def test_write_behind_fills_l2_without_the_request_waiting_for_it(stack: Stack) -> None:
    from service import anatomy

    l2 = anatomy.STAGES.index(anatomy.Stage.L2)

    async def scenario() -> None:
        client = aioredis.Redis.from_url(stack.redis)
        try:
            for behind in (False, True):
                cache = MultiLevelCache(redis=client, write_behind=behind)
                key = f"test:{uuid.uuid4().hex}"
                timings = anatomy.begin()
                await cache.set(key, b"value")
                assert (timings.spent[l2] > 0) is not behind  # waited for Redis, or not
                deadline = time.monotonic() + 2
                while await client.get(KEY_PREFIX + key) is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                assert await client.get(KEY_PREFIX + key) == b"value"  # L2 filled either way
                await cache.close()
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_l2_reads_are_skipped_while_they_rarely_hit_and_resume_when_they_do(stack: Stack) -> None:
    async def misses(client: aioredis.Redis) -> int:
        return int((await client.info("stats"))["keyspace_misses"])

    async def scenario() -> None:
        client = aioredis.Redis.from_url(stack.redis)
        prefix = f"test:{uuid.uuid4().hex}:"
        try:
            cache = MultiLevelCache(redis=client, bypass_below=0.5)
            before = await misses(client)
            for i in range(1000):  # a cold cache: every read misses
                assert await cache.get(f"{prefix}cold{i}") is None
            read = await misses(client) - before
            # the first 128 reads judge the ratio; then one L1 miss in 8 still reads L2
            assert 128 <= read <= 128 + 900 / 8 + 2, read
            always = MultiLevelCache(redis=client)  # bypass off: every miss reads L2
            before = await misses(client)
            for i in range(100):
                assert await always.get(f"{prefix}other{i}") is None
            assert await misses(client) - before == 100
            # L2 warms up (filled elsewhere): the probes hit, and reading resumes
            await client.mset({f"{KEY_PREFIX}{prefix}warm{i}": b"v" for i in range(3000)})
            found = [await cache.get(f"{prefix}warm{i}") for i in range(3000)]
            assert found[-500:] == [b"v"] * 500  # read from L2 again at the end
        finally:
            await client.aclose()

    asyncio.run(scenario())
