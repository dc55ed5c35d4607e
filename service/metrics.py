"""Prometheus metrics of the service; multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set."""

from __future__ import annotations

import asyncio
import bisect
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("http_requests_total", "Requests by route and status", ["route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds", "Request latency by route", ["route"], buckets=LATENCY_BUCKETS
)
IN_FLIGHT = Gauge("http_requests_in_flight", "Requests being served", multiprocess_mode="livesum")
POOL_SIZE = Gauge("db_pool_size", "Pool size by engine", ["engine"], multiprocess_mode="livesum")
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out",
    "Connections checked out by engine",
    ["engine"],
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "db_pool_overflow", "Overflow connections by engine", ["engine"], multiprocess_mode="livesum"
)
DB_CONNECTS = Counter(
    "db_connections_opened_total", "New database connections opened by engine", ["engine"]
)
POOL_HOLD = Histogram(
    "db_connection_hold_seconds",
    "How long a request holds a pooled connection (checkout to checkin)",
    ["engine"],
    buckets=LATENCY_BUCKETS,
)
L1_ENTRIES = Gauge(
    "cache_l1_entries", "Entries in the L1 caches (max of the workers)", multiprocess_mode="livemax"
)
GC_FROZEN = Gauge(
    "gc_frozen_objects",
    "Objects moved out of the garbage collector's reach at start-up, gc_freeze (max of the workers)",
    multiprocess_mode="livemax",
)
BATCH_PENDING = Gauge(
    "batcher_pending",
    "Lookups waiting in the batcher (max of the workers)",
    multiprocess_mode="livemax",
)
L2_BYPASSED = Counter(
    "cache_l2_bypassed_total", "L1 misses that skipped L2 because it rarely hit (l2_bypass_below)"
)
L2_SKIPPED = Counter(
    "cache_l2_pauses_total", "Times L2 was skipped for a while after a Redis error"
)
BODY_REJECTED = Counter("http_body_rejected_total", "Requests refused for an oversized body")
QUERIES = Counter("db_queries_total", "Queries sent to the database", ["engine"])
DB_UNAVAILABLE = Counter(
    "db_unavailable_total", "Requests answered 503 because the database was unreachable", ["error"]
)
POOL_WAIT = Histogram(
    "db_pool_checkout_seconds",
    "Time to get a connection from the pool (includes opening one)",
    ["engine"],
    buckets=LATENCY_BUCKETS,
)
CACHE_HITS = Counter("cache_hits_total", "Cache hits by level (l1, l2, model)", ["level"])
CACHE_MISSES = Counter("cache_misses_total", "Cache misses by level (l1, l2, model)", ["level"])
BATCH_SIZE = Histogram(
    "batcher_batch_size",
    "Distinct ids per batched query",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
BATCH_FALLBACKS = Counter(
    "batcher_fallbacks_total", "Lookups that bypassed a full batcher queue", ["action"]
)
INVALIDATIONS_SENT = Counter("cache_invalidations_sent_total", "Invalidations published")
INVALIDATIONS_RECEIVED = Counter(
    "cache_invalidations_received_total", "Invalidations received from other workers"
)
INVALIDATIONS_FAILED = Counter(
    "cache_invalidations_failed_total", "Invalidations not sent because Redis was down"
)
PUBSUB_RECONNECTS = Counter(
    "cache_pubsub_subscriptions_total", "Times the invalidation listener (re)subscribed"
)
UPSTREAM_LATENCY = Histogram(
    "upstream_request_seconds", "Upstream call latency by mode", ["mode"], buckets=LATENCY_BUCKETS
)
UPSTREAM_ERRORS = Counter("upstream_errors_total", "Upstream failures by kind", ["kind"])
LOOP_LAG = Histogram(
    "event_loop_lag_seconds", "Event-loop lag measured by a periodic timer", buckets=LATENCY_BUCKETS
)


CACHE_HIT = {level: CACHE_HITS.labels(level) for level in ("l1", "l2", "model")}
CACHE_MISS = {level: CACHE_MISSES.labels(level) for level in ("l1", "l2", "model")}
FLUSH_INTERVAL = 0.1


class Batched:
    """Values added up in plain memory that `flush` moves into Prometheus in bulk."""

    def flush(self) -> None:
        raise NotImplementedError

    async def flush_forever(self, interval: float = FLUSH_INTERVAL) -> None:
        """Flush every `interval` seconds until cancelled (and once more then)."""
        try:
            while True:
                await asyncio.sleep(interval)
                self.flush()
        finally:
            self.flush()


class Tally(Batched):
    """This process's per-request metrics, added up in plain memory and moved into Prometheus in bulk.

    A Prometheus update takes a lock, and in multiprocess mode an mmap write, per value; a request
    made several (in flight up and down, its count, its latency bucket and sum, a cache hit) plus a
    labels() lookup each. Here a request adds to dicts; `flush` runs on every scrape of this
    process, every `metrics_flush_interval` seconds, and, with several workers, whenever this one
    goes idle (a scrape answered by another worker then misses nothing this one has answered).
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._requests: dict[tuple[str, int], int] = {}
        # per route: a count per latency bucket (the last is +Inf), then the sum
        self._latency: dict[str, list[float]] = {}
        self._counts: dict[Any, float] = {}

    def count(self, child: Any, amount: float = 1.0) -> None:
        """Add to a counter (a labelled child) at the next flush."""
        self._counts[child] = self._counts.get(child, 0.0) + amount

    def request(self, route: str, status: int, seconds: float) -> None:
        """Add one finished request: its route and status, and its latency."""
        key = (route, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        row = self._latency.get(route)
        if row is None:
            row = self._latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        row[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        row[-1] += seconds

    def flush(self) -> None:
        """Move what was added since the last flush into the Prometheus metrics."""
        IN_FLIGHT.set(self.in_flight)
        if self._requests:
            requests, self._requests = self._requests, {}
            for (route, status), n in requests.items():
                REQUESTS.labels(route, str(status)).inc(n)
        if self._latency:
            latency, self._latency = self._latency, {}
            for route, row in latency.items():
                child: Any = LATENCY.labels(route)
                # prometheus_client keeps one (non-cumulative) value per bucket and a sum;
                # adding to them in bulk is what observe() does one value at a time.
                for i, observed in enumerate(row[:-1]):
                    if observed:
                        child._buckets[i].inc(observed)
                child._sum.inc(row[-1])
        if self._counts:
            counts, self._counts = self._counts, {}
            for counter, amount in counts.items():
                counter.inc(amount)


TALLY = Tally()


def multiprocess_mode() -> bool:
    """Whether metrics are merged across worker processes through files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render() -> tuple[bytes, str]:
    """The metrics page and its content type, merged across workers when multiprocess."""
    TALLY.flush()
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
