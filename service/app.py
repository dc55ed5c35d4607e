"""The bundled FastAPI service: an app factory whose every optimization is a setting."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import sqlalchemy.exc
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service import anatomy, heap, metrics
from service.batcher import Batcher
from service.cache import L1Cache, MultiLevelCache, subscriber_client
from service.db import Database
from service.resources import Resources
from service.routes import router
from service.settings import ServiceSettings
from service.upstream import Upstream, import_client


def create_app(
    settings: ServiceSettings | None = None,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    upstream_url: str | None = None,
) -> FastAPI:
    """The service app; settings and URLs default to the environment."""
    settings = settings or ServiceSettings.from_env()
    database_url = database_url or os.environ["DATABASE_URL"]
    redis_url = redis_url or os.environ["REDIS_URL"]
    upstream_url = upstream_url or os.environ.get("UPSTREAM_URL") or None
    if upstream_url and settings.upstream_mode == "shared":
        import_client()  # now: in gunicorn's master (preload) once, not in every worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.create(
            settings, url=database_url, read_url=os.environ.get("READ_DATABASE_URL")
        )
        # A cache must fail fast: bounded socket waits and no retries (redis-py's default
        # retries 10 times, backing off up to 1 s each, when Redis is down).
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=settings.redis_max_connections,
            timeout=5,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        res = Resources(settings=settings, db=db, redis=aioredis.Redis(connection_pool=pool))
        watchers = [asyncio.create_task(_watch_loop_lag()), asyncio.create_task(_watch_pools(db))]
        if settings.anatomy:
            watchers.append(asyncio.create_task(anatomy.RECORDER.flush_forever()))
        if settings.metrics_flush_interval > 0:
            watchers.append(
                asyncio.create_task(metrics.TALLY.flush_forever(settings.metrics_flush_interval))
            )
        watchers.append(asyncio.create_task(_watch_bounds(res)))
        subscriber: aioredis.Redis | None = None
        if settings.cache:
            # Pub/sub holds its connection for good: a client of its own, outside the pool.
            subscriber = (
                subscriber_client(redis_url, timeout=REDIS_TIMEOUT)
                if settings.invalidation
                else None
            )
            res.cache = MultiLevelCache(
                redis=res.redis,
                subscriber=subscriber,
                l1_size=settings.l1_size,
                l2_ttl=settings.l2_ttl,
                publish=settings.invalidation,
                write_behind=settings.l2_write_behind,
                bypass_below=settings.l2_bypass_below,
            )
            if subscriber is not None:
                watchers.append(asyncio.create_task(res.cache.listen()))
        if settings.model_cache:
            res.model_cache = L1Cache(max_size=settings.l1_size)
        if settings.batcher:
            res.batcher, res.detail_batcher = (
                Batcher(
                    fetch,
                    size=settings.batch_size,
                    interval=settings.batch_flush_interval,
                    max_pending=settings.batch_max_pending,
                )
                for fetch in (db.get_users, db.get_user_details)
            )
        if upstream_url:
            res.upstream = Upstream(
                upstream_url,
                mode=settings.upstream_mode,
                timeout=settings.upstream_timeout,
                max_connections=settings.upstream_max_connections,
            )
            await res.upstream.start()
        app.state.res = res
        if settings.gc_freeze:
            metrics.GC_FROZEN.set(heap.freeze())
        try:
            yield
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with suppress(asyncio.CancelledError):
                    await task
            for batcher in (res.batcher, res.detail_batcher):
                if batcher is not None:
                    await batcher.close()
            if res.cache is not None:
                await res.cache.close()
            if res.upstream is not None:
                await res.upstream.close()
            if subscriber is not None:
                await subscriber.aclose()
            await res.redis.aclose()
            await db.dispose()

    app = FastAPI(title="FastAPI tuning workbench: bundled service", lifespan=lifespan)
    app.add_middleware(_BodyLimitMiddleware, limit=MAX_BODY_BYTES)
    app.add_middleware(
        _MetricsMiddleware,
        anatomy=settings.anatomy,
        batched=settings.metrics_flush_interval > 0,
        flush_when_idle=metrics.multiprocess_mode(),
    )
    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # The routes themselves, not include_router(): FastAPI matches an included router through
    # wrappers of its own, ~15% of an L1-hit request's time in the app (docs/hot_path.md).
    app.router.routes.extend(router.routes)
    return app


# The database is down, restarting, unreachable or its pool is exhausted: a 503 the client can
# retry, on a connection kept alive (an unhandled error would close it) and without a traceback.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,  # query_timeout (asyncpg's command_timeout); an OSError, named for the reader
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    sqlalchemy.exc.TimeoutError,  # pool_timeout
)
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (*_CONNECTION_ERRORS, sqlalchemy.exc.DBAPIError)


def database_unavailable(exc: BaseException) -> bool:
    """True when exc says the database cannot be reached (as opposed to a bad query)."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        # SQLAlchemy's asyncpg adapter wraps the driver's error as its cause
        orig = exc.orig
        return isinstance(orig, _CONNECTION_ERRORS) or isinstance(
            getattr(orig, "__cause__", None), _CONNECTION_ERRORS
        )
    return False


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    if not database_unavailable(exc):
        raise exc
    metrics.DB_UNAVAILABLE.labels(type(exc).__name__).inc()
    body = b'{"detail":"database unavailable: ' + type(exc).__name__.encode() + b'"}'
    return Response(body, 503, headers={"Retry-After": "1"}, media_type="application/json")


async def _invalid_request(request: Request, exc: Exception) -> Response:
    # FastAPI's own handler echoes the input as UTF-8; a lone surrogate in it (valid JSON
    # "\\ud800", not encodable) turned the 422 into a 500. ASCII-escaped JSON says the same.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, 422, media_type="application/json")


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# Requests of the workbench itself, kept out of the anatomy of the load.
_UNTIMED = frozenset(("/metrics", "/health"))


class _MetricsMiddleware:
    """Counts requests by route and status and times them (pure ASGI, no per-request task)."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        anatomy: bool = True,
        batched: bool = True,
        flush_when_idle: bool = False,
    ) -> None:
        self.app = app
        self.anatomy = anatomy
        self.batched = batched  # False: into Prometheus at the end of every request
        self.flush_when_idle = flush_when_idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()
        timings = anatomy.begin() if self.anatomy else None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        tally = metrics.TALLY
        tally.in_flight += 1
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            tally.in_flight -= 1
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            ended = time.perf_counter()
            tally.request(label, status, ended - start)
            if timings is not None:
                anatomy.end()
                if label not in _UNTIMED:
                    received = scope.get(anatomy.RECEIVED_KEY, 0.0)
                    anatomy.RECORDER.finish(timings, received=received, started=start, ended=ended)
            if not self.batched or (self.flush_when_idle and not tally.in_flight):
                tally.flush()


MAX_BODY_BYTES = 64 * 1024
REDIS_TIMEOUT = 0.5
_TOO_LARGE = b'{"detail":"request body larger than %d bytes"}' % MAX_BODY_BYTES


class _BodyLimitMiddleware:
    """413 for a body over `limit` bytes, by Content-Length or while a chunked body streams in."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, limit: int
    ) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        framed = False  # a body is announced (HTTP/1.1 has no other way to send one)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._refuse(send)
                    return
                framed = True
            elif name == b"transfer-encoding":
                framed = True
        if not framed:
            # No body can follow: nothing to count, and no wrappers on the hot path of a GET.
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    metrics.BODY_REJECTED.inc()
                    raise _BodyTooLarge
            return message

        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        metrics.BODY_REJECTED.inc()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": _TOO_LARGE})


class _BodyTooLarge(HTTPException):
    """A streamed request body went over the limit (FastAPI passes HTTPExceptions through)."""

    def __init__(self) -> None:
        super().__init__(413, f"request body larger than {MAX_BODY_BYTES} bytes")


async def _watch_bounds(res: Resources, interval: float = 0.5) -> None:
    """Publish the sizes of the service's bounded in-memory structures."""
    while True:
        if res.cache is not None:
            metrics.L1_ENTRIES.set(len(res.cache.l1))
        if res.batcher is not None:
            metrics.BATCH_PENDING.set(res.batcher.pending)
        await asyncio.sleep(interval)


async def _watch_loop_lag(interval: float = 0.1) -> None:
    """Record how late a periodic timer fires: the event loop's lag."""
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + interval
        await asyncio.sleep(interval)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - expected))


async def _watch_pools(db: Database, interval: float = 0.5) -> None:
    """Publish pool gauges for each engine."""
    while True:
        for name, engine in db.engines().items():
            pool: Any = engine.pool
            metrics.POOL_SIZE.labels(name).set(pool.size())
            metrics.POOL_CHECKED_OUT.labels(name).set(pool.checkedout())
            metrics.POOL_OVERFLOW.labels(name).set(max(0, pool.overflow()))
        await asyncio.sleep(interval)
