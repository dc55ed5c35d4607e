"""The bundled FastAPI service: an app factory whose every optimization is a setting."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import Response

from service import metrics
from service.db import Database
from service.serializers import dumps_orjson, dumps_pydantic, user_dict
from service.settings import ServiceSettings

MAX_USER_ID = 2**62
UserId = Annotated[int, Path(ge=1, le=MAX_USER_ID, description="User id")]
JSON = "application/json"


@dataclass
class Resources:
    """What the service holds for its lifetime: settings, engines, Redis."""

    settings: ServiceSettings
    db: Database
    redis: aioredis.Redis


def create_app(
    settings: ServiceSettings | None = None,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
) -> FastAPI:
    """The service app; settings and URLs default to the environment."""
    settings = settings or ServiceSettings.from_env()
    database_url = database_url or os.environ["DATABASE_URL"]
    redis_url = redis_url or os.environ["REDIS_URL"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.create(
            settings, url=database_url, read_url=os.environ.get("READ_DATABASE_URL")
        )
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=settings.redis_max_connections, timeout=5
        )
        app.state.res = Resources(
            settings=settings, db=db, redis=aioredis.Redis(connection_pool=pool)
        )
        watchers = [asyncio.create_task(_watch_loop_lag()), asyncio.create_task(_watch_pools(db))]
        try:
            yield
        finally:
            for task in watchers:
                task.cancel()
            for task in watchers:
                with suppress(asyncio.CancelledError):
                    await task
            await app.state.res.redis.aclose()
            await db.dispose()

    app = FastAPI(title="FastAPI tuning workbench: bundled service", lifespan=lifespan)
    app.add_middleware(_MetricsMiddleware)

    @app.get("/health")
    async def health(request: Request) -> Response:
        res: Resources = request.app.state.res
        problems = {}
        try:
            await asyncio.wait_for(res.db.ping(), timeout=2)
        except Exception as exc:  # any failure means unhealthy
            problems["database"] = type(exc).__name__
        try:
            await asyncio.wait_for(res.redis.ping(), timeout=2)
        except Exception as exc:
            problems["redis"] = type(exc).__name__
        body = {"status": "ok" if not problems else "unavailable", "problems": problems}
        return Response(dumps_orjson(body), status_code=503 if problems else 200, media_type=JSON)

    @app.get("/metrics")
    async def metrics_page() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/users/{user_id}")
    async def get_user(user_id: UserId, request: Request) -> Response:
        res: Resources = request.app.state.res
        row = await res.db.get_user(user_id)
        if row is None:
            raise HTTPException(404, f"user {user_id} not found")
        if res.settings.serializer == "orjson":
            return Response(dumps_orjson(user_dict(row)), media_type=JSON)
        return Response(dumps_pydantic(row), media_type=JSON)

    return app


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _MetricsMiddleware:
    """Counts requests by route and status and times them (pure ASGI, no per-request task)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics.IN_FLIGHT.dec()
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            metrics.REQUESTS.labels(label, str(status)).inc()
            metrics.LATENCY.labels(label).observe(time.perf_counter() - start)


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
