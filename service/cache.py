"""Multi-level cache: L1 in-process LRU with TTL, L2 Redis with TTL, pub/sub invalidation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps
from typing import Concatenate, ParamSpec, Protocol

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service import metrics
from service.anatomy import Stage, timed

KEY_PREFIX = "cache:"
CHANNEL = "cache:invalidations"
RETRY_DELAY = 0.2
HEALTH_CHECK_INTERVAL = 1.0  # the listener PINGs a connection silent this long ...
REPLY_TIMEOUT = 1.0  # ... and resubscribes when the PONG does not come within this
REPEAT_AFTER = 0.5
TTL_JITTER = 0.2
BYPASS_WINDOW = 256  # L2 reads over which its hit ratio is judged
BYPASS_PROBE = 8  # while bypassed, one L1 miss in this many still reads L2
MAX_WRITES = 1_000  # write-behind L2 sets pending at most
L2_PAUSE = 1.0  # after a Redis failure, requests skip L2 this long instead of each waiting on it

log = logging.getLogger(__name__)
P = ParamSpec("P")


class L1Cache:
    """A bounded in-process LRU whose entries expire after their TTL."""

    def __init__(self, *, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired (an expired entry is dropped)."""
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def set(self, key: str, value: bytes, *, ttl: float) -> None:
        """Store value for ttl seconds, evicting the least recently used beyond max_size."""
        self._data[key] = (self._clock() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def delete(self, key: str) -> bool:
        """Drop key; True when it was there."""
        return self._data.pop(key, None) is not None

    def clear(self) -> None:
        """Drop everything."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class MultiLevelCache:
    """L1 (this process) in front of L2 (Redis, shared by workers); values are bytes."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        subscriber: aioredis.Redis | None = None,
        l1_size: int = 10_000,
        l2_ttl: int = 300,
        publish: bool = True,
        channel: str = CHANNEL,
        repeat_after: float | None = REPEAT_AFTER,
        write_behind: bool = False,
        bypass_below: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.subscriber = subscriber
        self.l1 = L1Cache(max_size=l1_size, clock=clock)
        self.l2_ttl = l2_ttl
        self.publish = publish
        self.channel = channel
        self.instance_id = uuid.uuid4().hex
        self.repeat_after = repeat_after
        self.write_behind = write_behind
        self._writes: set[asyncio.Task[None]] = set()
        self.subscribed = asyncio.Event()
        self._repeats: set[asyncio.Task[None]] = set()
        self._clock = clock
        self._l2_down_until = 0.0  # 0: L2 in use; else skipped until then (a circuit breaker)
        self._probing = False
        self.bypass_below = bypass_below
        self._asked = 0.0  # L2 reads and their hits, decaying (halved every BYPASS_WINDOW reads)
        self._hits = 0.0
        self._skipped = 0

    def _worth_asking(self) -> bool:
        """Whether to read L2 on this L1 miss.

        A read costs a Redis round trip; it pays only when it hits often enough. While fewer than
        `bypass_below` of recent reads hit (uniform ids over many users, a cold cache), most
        misses go straight to the database and fill L2 for later; one in BYPASS_PROBE still
        reads it, so the ratio is known and reading resumes once L2 has warmed up.
        """
        if self.bypass_below <= 0 or self._asked < BYPASS_WINDOW / 2:
            return True
        if self._hits >= self.bypass_below * self._asked:
            return True
        self._skipped += 1
        if self._skipped % BYPASS_PROBE == 0:
            return True
        metrics.L2_BYPASSED.inc()
        return False

    def _count_read(self, hit: bool) -> None:
        self._asked += 1
        self._hits += hit
        if self._asked >= BYPASS_WINDOW:
            self._asked /= 2
            self._hits /= 2

    def _l2_available(self) -> bool:
        """Closed: use L2. Open (after a failure): skip it for L2_PAUSE, then let one probe in."""
        if self._l2_down_until == 0.0:
            return True
        if self._probing or self._clock() < self._l2_down_until:
            return False
        self._probing = True
        return True

    def _l2_ok(self) -> None:
        if self._l2_down_until:
            self._l2_down_until = 0.0
            self._probing = False

    def _l2_failed(self) -> None:
        # A down or frozen Redis costs one timeout per pause, not one per request.
        self._l2_down_until = self._clock() + L2_PAUSE
        self._probing = False
        metrics.L2_SKIPPED.inc()

    async def get(self, key: str) -> bytes | None:
        """L1, then L2 (copying a hit into L1); None on a miss or when Redis is down."""
        with timed(Stage.L1):
            value = self.l1.get(key)
        if value is not None:
            metrics.TALLY.count(metrics.CACHE_HIT["l1"])
            return value
        metrics.TALLY.count(metrics.CACHE_MISS["l1"])
        raw = None
        if self._worth_asking() and self._l2_available():
            try:
                with timed(Stage.L2):
                    raw = await self.redis.get(KEY_PREFIX + key)
            except RedisError:
                # A cache that is down is a miss, never an error for the client.
                self._l2_failed()
            else:
                self._l2_ok()
                self._count_read(raw is not None)
        if raw is None:
            metrics.TALLY.count(metrics.CACHE_MISS["l2"])
            return None
        metrics.TALLY.count(metrics.CACHE_HIT["l2"])
        value = raw if isinstance(raw, bytes) else str(raw).encode()
        self.l1.set(key, value, ttl=self.l2_ttl)
        return value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store in L1 and L2 for ttl seconds (default l2_ttl)."""
        # Up to TTL_JITTER shorter: entries filled together (a warm-up, a restart) do not all
        # expire in the same second and send every request to the database at once.
        seconds = (ttl if ttl is not None else self.l2_ttl) * (1 - TTL_JITTER * random.random())
        self.l1.set(key, value, ttl=seconds)
        if not self._l2_available():
            return
        if self.write_behind:
            # The response need not wait for Redis: the write runs on its own (a task of its own,
            # so its time is not the request's). Beyond MAX_WRITES pending, L2 is skipped.
            if len(self._writes) < MAX_WRITES:
                task = asyncio.get_running_loop().create_task(self._write(key, value, seconds))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
            return
        await self._write(key, value, seconds)

    async def _write(self, key: str, value: bytes, seconds: float) -> None:
        try:
            with timed(Stage.L2):
                await self.redis.set(KEY_PREFIX + key, value, ex=max(1, int(seconds)))
        except RedisError:
            log.warning("L2 set failed for %s; skipping L2 for %g s", key, L2_PAUSE)
            self._l2_failed()
        else:
            self._l2_ok()

    async def invalidate(self, keys: Sequence[str]) -> None:
        """Drop keys here and in L2, tell the other workers, and do it again after repeat_after."""
        await self._invalidate_now(keys)
        if self.repeat_after is not None and keys:
            # A read that fetched the old row before the write may store it after this
            # invalidation; the second round removes what such a read put back.
            task = asyncio.get_running_loop().create_task(self._invalidate_later(list(keys)))
            self._repeats.add(task)
            task.add_done_callback(self._repeats.discard)

    async def _invalidate_later(self, keys: list[str]) -> None:
        assert self.repeat_after is not None
        await asyncio.sleep(self.repeat_after)
        await self._invalidate_now(keys)

    async def close(self) -> None:
        """Drop pending repeated invalidations; finish the L2 writes under way."""
        for task in list(self._repeats):
            task.cancel()
        await asyncio.gather(*self._repeats, *self._writes, return_exceptions=True)

    async def _invalidate_now(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.l1.delete(key)
        if not keys:
            return
        try:
            await self.redis.delete(*(KEY_PREFIX + key for key in keys))
            if self.publish:
                message = orjson.dumps({"origin": self.instance_id, "keys": list(keys)})
                await self.redis.publish(self.channel, message)
                metrics.INVALIDATIONS_SENT.inc()
        except RedisError:
            # The write is committed; a Redis that is down has no L2 to clean, and the other
            # workers empty their L1 when their listener resubscribes.
            metrics.INVALIDATIONS_FAILED.inc()
            log.warning("invalidation of %s not sent: Redis unavailable", list(keys))

    def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            keys = [str(key) for key in message["keys"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed invalidation message: %r", data[:200])
            return
        if message.get("origin") == self.instance_id:
            return
        for key in keys:
            self.l1.delete(key)
        metrics.INVALIDATIONS_RECEIVED.inc()

    async def listen(
        self,
        *,
        retry_delay: float = RETRY_DELAY,
        health_check_interval: float = HEALTH_CHECK_INTERVAL,
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        """Apply invalidations from other workers until cancelled; resubscribe after Redis drops.

        A connection silent for health_check_interval is sent a PING; no reply within
        reply_timeout means it is dead or half-open (a frozen server, a lost peer), and the
        listener resubscribes on a new one rather than miss invalidations without knowing.
        """
        if self.subscriber is None:
            raise RuntimeError("listen() needs a subscriber client")
        loop = asyncio.get_running_loop()
        while True:
            pubsub = self.subscriber.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                heard = loop.time()
                pinged: float | None = None
                while True:
                    wait = min(health_check_interval, reply_timeout)
                    message = await pubsub.get_message(timeout=wait)
                    now = loop.time()
                    if message is not None:
                        heard, pinged = now, None
                        if message["type"] == "subscribe":
                            # Invalidations may have been missed while unsubscribed: start L1 afresh.
                            self.l1.clear()
                            self.subscribed.set()
                            metrics.PUBSUB_RECONNECTS.inc()
                        elif message["type"] == "message":
                            self._on_message(message["data"])
                    elif pinged is not None and now - pinged > reply_timeout:
                        raise ConnectionError(f"no reply to a PING within {reply_timeout:g} s")
                    if pinged is None and now - heard >= health_check_interval:
                        await pubsub.ping()
                        pinged = now
            except (RedisError, OSError) as exc:
                log.warning("invalidation listener lost Redis (%s); resubscribing", exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(retry_delay)


def subscriber_client(url: str, *, timeout: float) -> aioredis.Redis:
    """A Redis client for the invalidation listener: bounded socket waits, no retries."""
    # Without a socket timeout, resubscribing to a frozen or unreachable Redis hangs for good.
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


class HasCache(Protocol):
    """Anything holding an optional MultiLevelCache (the service's Resources)."""

    @property
    def cache(self) -> MultiLevelCache | None: ...


def cached_endpoint(
    *, ttl: float | None = None, key: Callable[P, str]
) -> Callable[
    [Callable[Concatenate[HasCache, P], Awaitable[bytes | None]]],
    Callable[Concatenate[HasCache, P], Awaitable[bytes | None]],
]:
    """Cache a body-producing function in the holder's multi-level cache (None is not cached)."""

    def decorator(
        func: Callable[Concatenate[HasCache, P], Awaitable[bytes | None]],
    ) -> Callable[Concatenate[HasCache, P], Awaitable[bytes | None]]:
        @wraps(func)
        async def wrapper(holder: HasCache, /, *args: P.args, **kwargs: P.kwargs) -> bytes | None:
            cache = holder.cache
            if cache is None:
                return await func(holder, *args, **kwargs)
            name = key(*args, **kwargs)
            hit = await cache.get(name)
            if hit is not None:
                return hit
            value = await func(holder, *args, **kwargs)
            if value is not None:
                await cache.set(name, value, ttl=ttl)
            return value

        return wrapper

    return decorator


def user_keys(user_id: int) -> list[str]:
    """Every cache key that holds data of one user (what a write must invalidate)."""
    return [f"user:{user_id}", f"user_full:{user_id}", f"user_computation:{user_id}"]
