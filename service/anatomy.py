"""Latency anatomy: where each request's time goes, stage by stage, recorded at little cost per request.

A request's stages are timed into a `Timings` registered for the task serving it (each request
runs in a task of its own, so each has its own). When the request ends, the middleware hands the
timings to this process's `Recorder`, which only adds to plain lists; a background task moves
the totals into Prometheus histograms a few times a second. Per-request Prometheus observations
in multiprocess mode cost ~1 µs per value (a lock and an mmap write): a dozen of them per
request would be several percent of an L1-hit request.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Histogram

from service.metrics import Batched


class Stage(StrEnum):
    """A part of a request's time in the service."""

    QUEUE = (
        "queue"  # waiting for the event loop: parsed -> app called, and a batch answered -> resumed
    )
    ROUTING = "routing"  # middleware -> handler: routing, path validation
    L1 = "l1"  # in-process cache lookup
    L2 = "l2"  # Redis cache round trips (get on an L1 miss, set after a fill)
    BATCHER = "batcher"  # waiting for the batch holding this lookup to be sent
    POOL = "pool"  # waiting for a pooled database connection (opening one included)
    QUERY = "query"  # holding the connection: the statements and their transaction
    SERIALIZE = "serialize"  # building the response body (Pydantic or orjson, object cache)
    UPSTREAM = "upstream"  # the call to the upstream service
    COMPUTE = "compute"  # CPU work of /expensive-computation
    RESPONSE = "response"  # handler returned -> response sent


STAGES: tuple[Stage, ...] = tuple(Stage)
TOTAL = "total"  # the request's whole time in the service (parsed -> response sent)
ACCOUNTED = "accounted"  # the sum of its stages (total minus time no stage claims)
SERIES: tuple[str, ...] = (*STAGES, TOTAL, ACCOUNTED)
_INDEX = {name: i for i, name in enumerate(SERIES)}
_TOTAL, _ACCOUNTED = _INDEX[TOTAL], _INDEX[ACCOUNTED]
# Stages as list positions, looked up once: hashing an enum member is a Python call.
_QUEUE, _ROUTING, _RESPONSE = (
    _INDEX[stage] for stage in (Stage.QUEUE, Stage.ROUTING, Stage.RESPONSE)
)
_N_STAGES = len(STAGES)

# 10 µs .. 10 s in steps of 10^0.1 (+26%): a percentile read between two bounds is off by at most
# a quarter, and interpolation within the bucket does much better for smooth distributions.
BUCKETS: tuple[float, ...] = tuple(10e-6 * 10 ** (i / 10) for i in range(61))
# The scope key the anatomy protocol sets: when the request's first bytes were parsed.
RECEIVED_KEY = "workbench.received"

HISTOGRAM = Histogram(
    "anatomy_seconds",
    "Time per request by stage (total: the whole request; accounted: the sum of its stages)",
    ["stage"],
    buckets=BUCKETS,
)


class Timings:
    """The time one request spent in each stage so far."""

    __slots__ = ("spent", "entered", "left")

    def __init__(self) -> None:
        self.spent = [0.0] * _N_STAGES
        self.entered = 0.0  # when the endpoint function was called (0: not reached)
        self.left = 0.0  # when it returned or raised

    def add(self, stage: Stage, seconds: float) -> None:
        """Count `seconds` more in stage."""
        self.spent[_INDEX[stage]] += seconds

    def merge(self, other: Timings) -> None:
        """Add another timings' stages (a batch's query time to each lookup that waited on it)."""
        for i, seconds in enumerate(other.spent):
            self.spent[i] += seconds


P = ParamSpec("P")
R = TypeVar("R")

# The timings of each task serving a timed request. Not a ContextVar: setting one in a request's
# task allocates a new context mapping and its node, collected objects that live until the task
# is freed, an event-loop iteration after the response. Those few per request took a burst of
# requests (read in one iteration) past the collector's gen0 threshold nearly every time: a
# young collection every ~80 L1-hit requests and a full one of the app's ~115,000 long-lived
# objects every ~8,000, ~20 µs per request in all (docs/anatomy.md). A dict entry, removed as
# the request ends, leaves nothing behind.
_by_task: dict[asyncio.Task[Any] | None, Timings] = {}
_current_task = asyncio.current_task


def current() -> Timings | None:
    """The timings of the request being served here, or None outside a timed request."""
    try:
        return _by_task.get(_current_task())
    except RuntimeError:  # no event loop running here
        return None


def begin() -> Timings:
    """Start timing the request this task serves (`end` when it is answered)."""
    timings = _by_task[_current_task()] = Timings()
    return timings


def end() -> None:
    """Stop timing the request this task serves: its timings are no longer current."""
    _by_task.pop(_current_task(), None)


def handler(endpoint: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap an endpoint to note when it is entered and left (routing before, response after)."""

    @wraps(endpoint)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        timings = current()
        if timings is None:
            return await endpoint(*args, **kwargs)
        timings.entered = time.perf_counter()
        try:
            return await endpoint(*args, **kwargs)
        finally:
            timings.left = time.perf_counter()

    return wrapper


class timed:
    """Context manager adding the time of its block to a stage of the current request."""

    __slots__ = ("index", "timings", "start")

    def __init__(self, stage: Stage) -> None:
        self.timings = current()
        # outside a timed request (the anatomy off): no clock read, no stage lookup
        self.index = _INDEX[stage] if self.timings is not None else 0
        self.start = 0.0

    def __enter__(self) -> timed:
        if self.timings is not None:
            self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.timings is not None:
            self.timings.spent[self.index] += time.perf_counter() - self.start


class Recorder(Batched):
    """This process's per-stage histograms, added to in memory and flushed to Prometheus."""

    def __init__(self) -> None:
        width = len(BUCKETS) + 1  # the last bucket is +Inf
        self._counts = [[0] * width for _ in SERIES]
        self._sums = [0.0] * len(SERIES)
        self._children = [HISTOGRAM.labels(name) for name in SERIES]

    def finish(self, timings: Timings, *, received: float, started: float, ended: float) -> None:
        """Close a request's timings (queue, routing, response) and record it."""
        spent = timings.spent
        if received:
            spent[_QUEUE] += started - received
        else:
            received = started  # a server without the stamping protocol: no queue stage
        if timings.entered:
            spent[_ROUTING] += timings.entered - started
            spent[_RESPONSE] += ended - (timings.left or ended)
        self.record(timings, ended - received)

    def record(self, timings: Timings, total: float) -> None:
        """Add one finished request: each stage it went through, its total and accounted time."""
        counts, sums = self._counts, self._sums
        accounted = 0.0
        for i, seconds in enumerate(timings.spent):
            if seconds > 0.0:
                accounted += seconds
                counts[i][bisect.bisect_left(BUCKETS, seconds)] += 1
                sums[i] += seconds
        counts[_TOTAL][bisect.bisect_left(BUCKETS, total)] += 1
        sums[_TOTAL] += total
        counts[_ACCOUNTED][bisect.bisect_left(BUCKETS, accounted)] += 1
        sums[_ACCOUNTED] += accounted

    def flush(self) -> None:
        """Move what was recorded since the last flush into the Prometheus histograms."""
        for i, child in enumerate(self._children):
            row = self._counts[i]
            if not any(row):
                continue
            # prometheus_client keeps one (non-cumulative) value per bucket and a sum; adding
            # to them in bulk is what observe() does one value at a time.
            buckets: Any = child._buckets
            for j, count in enumerate(row):
                if count:
                    buckets[j].inc(count)
                    row[j] = 0
            child._sum.inc(self._sums[i])
            self._sums[i] = 0.0


RECORDER = Recorder()
