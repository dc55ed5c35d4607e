"""The service's endpoints."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request
from fastapi.dependencies.utils import get_dependant, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute

from service import anatomy, metrics
from service.anatomy import Stage, handler, timed
from service.cache import HasCache, cached_endpoint, user_keys
from service.resources import Resources
from service.serializers import (
    UserUpdate,
    dumps_orjson,
    dumps_pydantic,
    dumps_pydantic_full,
    user_dict,
    user_full_dict,
)
from service.upstream import UpstreamError

MAX_USER_ID = 2**62
UserId = Annotated[int, Path(ge=1, le=MAX_USER_ID, description="User id")]
JSON = "application/json"


def _declared_id(user_id: UserId) -> None:
    """The user id as FastAPI declares it: what a bad id is validated (and documented) against."""


_ID_FIELDS = get_dependant(path="/users/{user_id}", call=_declared_id).path_params


def _id_doc() -> dict[str, Any]:
    """The OpenAPI entry FastAPI writes for the declared id (its parameter and its 422 answer).

    The GET endpoints read the id themselves (user_id_of), so FastAPI would not document it.
    """
    probe = FastAPI()
    probe.get("/users/{user_id}")(_declared_id)
    operation = probe.openapi()["paths"]["/users/{user_id}"]["get"]
    return {
        "parameters": operation["parameters"],
        "responses": {"422": operation["responses"]["422"]},
    }


_ID_DOC = _id_doc()


def user_id_of(request: Request) -> int:
    """The path's user id: a plain decimal in range at once, anything else as FastAPI validates it.

    FastAPI's parameter machinery (dependency solving, Pydantic, error collection) is ~10% of an
    L1-hit request; a bad id still goes through it, so the 422 is the one FastAPI gives.
    """
    text: str = request.path_params["user_id"]
    # ASCII digits, no leading zero, at most 18 of them: 1 <= id < 10**18 < MAX_USER_ID.
    if text.isascii() and text.isdigit() and len(text) < 19 and text[0] != "0":
        return int(text)
    values, errors = request_params_to_args(_ID_FIELDS, request.path_params)
    if errors:
        raise RequestValidationError(errors)
    user_id: int = values["user_id"]
    return user_id


class _TimedRoute(APIRoute):
    """A route whose endpoint notes when it is entered and left, for the latency anatomy."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, handler(endpoint), **kwargs)


router = APIRouter(route_class=_TimedRoute)


def _res(request: Request) -> Resources:
    res: Resources = request.app.state.res
    return res


class _JSONBody(Response):
    """A response whose JSON body is already encoded: its two headers set, not worked out."""

    media_type = JSON

    def __init__(self, body: bytes, status_code: int = 200) -> None:
        # What Response.__init__ ends up with for bytes and a media type, without its checks.
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]


def _json(body: bytes, status_code: int = 200) -> Response:
    return _JSONBody(body, status_code)


@router.get("/health")
async def health(request: Request) -> Response:
    """200 when the database and Redis answer, else 503 naming what does not."""
    res = _res(request)
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
    return _json(dumps_orjson(body), 503 if problems else 200)


@router.get("/metrics")
async def metrics_page() -> Response:
    """Prometheus text."""
    anatomy.RECORDER.flush()  # this process's stages up to now, not up to its last flush
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


async def _load_user(res: Resources, user_id: int) -> dict[str, Any] | None:
    if res.batcher is not None:
        return await res.batcher.load(user_id)
    return await res.db.get_user(user_id)


def _render_user(res: Resources, row: Mapping[str, Any]) -> bytes:
    """The user's JSON by the configured serializer, through the TTL object cache when on."""
    with timed(Stage.SERIALIZE):
        return _render_user_untimed(res, row)


def _render_user_untimed(res: Resources, row: Mapping[str, Any], *, full: bool = False) -> bytes:
    if full:
        render = dumps_pydantic_full if res.settings.serializer == "pydantic" else _dumps_full
    else:
        render = dumps_pydantic if res.settings.serializer == "pydantic" else _dumps_user_orjson
    if res.model_cache is None:
        return render(row)
    # updated_at in the key: a changed row never hits a stale entry.
    key = f"{'full:' if full else ''}{row['id']}:{row['updated_at'].isoformat()}"
    body = res.model_cache.get(key)
    if body is None:
        metrics.TALLY.count(metrics.CACHE_MISS["model"])
        body = render(row)
        res.model_cache.set(key, body, ttl=res.settings.model_cache_ttl)
    else:
        metrics.TALLY.count(metrics.CACHE_HIT["model"])
    return body


def _dumps_user_orjson(row: Mapping[str, Any]) -> bytes:
    return dumps_orjson(user_dict(row))


def _dumps_full(row: Mapping[str, Any]) -> bytes:
    return dumps_orjson(user_full_dict(row))


@cached_endpoint(key=lambda user_id: f"user_full:{user_id}")
async def _user_full_body(holder: HasCache, user_id: int) -> bytes | None:
    assert isinstance(holder, Resources)
    if holder.detail_batcher is not None:
        row = await holder.detail_batcher.load(user_id)
    else:
        row = await holder.db.get_user_detail(user_id)
    if row is None:
        return None
    with timed(Stage.SERIALIZE):
        return _render_user_untimed(holder, row, full=True)


@cached_endpoint(key=lambda user_id: f"user:{user_id}")
async def _user_body(holder: HasCache, user_id: int) -> bytes | None:
    assert isinstance(holder, Resources)
    row = await _load_user(holder, user_id)
    return None if row is None else _render_user(holder, row)


@router.get("/users/{user_id}", openapi_extra=_ID_DOC)
async def get_user(request: Request) -> Response:
    """One user: serializer, object cache, batcher and multi-level cache as configured."""
    user_id = user_id_of(request)
    body = await _user_body(_res(request), user_id)
    if body is None:
        raise HTTPException(404, f"user {user_id} not found")
    return _json(body)


@router.get("/users/{user_id}/full", openapi_extra=_ID_DOC)
async def get_user_full(request: Request) -> Response:
    """A user with profile and settings nested: the account's richer response, where the
    serializer's cost shows. Batcher, object cache and multi-level cache as configured."""
    user_id = user_id_of(request)
    body = await _user_full_body(_res(request), user_id)
    if body is None:
        raise HTTPException(404, f"user {user_id} not found")
    return _json(body)


@router.get("/users/{user_id}/fast", openapi_extra=_ID_DOC)
async def get_user_fast(request: Request) -> Response:
    """One user by orjson straight from the row: no Pydantic model on the way out."""
    user_id = user_id_of(request)
    row = await _load_user(_res(request), user_id)
    if row is None:
        raise HTTPException(404, f"user {user_id} not found")
    with timed(Stage.SERIALIZE):
        return _json(_dumps_user_orjson(row))


@router.get("/users/{user_id}/profile", openapi_extra=_ID_DOC)
async def get_user_profile(request: Request) -> Response:
    """A user plus what the upstream service knows about them."""
    user_id = user_id_of(request)
    res = _res(request)
    if res.upstream is None:
        raise HTTPException(503, "no upstream configured (UPSTREAM_URL)")
    row = await _load_user(res, user_id)
    if row is None:
        raise HTTPException(404, f"user {user_id} not found")
    try:
        with timed(Stage.UPSTREAM):
            external = await res.upstream.get_user(user_id)
    except UpstreamError as exc:
        raise HTTPException(504 if exc.kind == "timeout" else 502, str(exc)) from None
    with timed(Stage.SERIALIZE):
        return _json(dumps_orjson({"user": user_dict(row), "external": external}))


def compute_score(detail: Mapping[str, Any], *, rounds: int) -> str:
    """Deterministic CPU work: `rounds` chained SHA-256 over the user's joined data."""
    digest = f"{detail['id']}|{detail['name']}|{detail['email']}|{detail['bio']}".encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@cached_endpoint(ttl=600, key=lambda user_id: f"user_computation:{user_id}")
async def _computation_body(holder: HasCache, user_id: int) -> bytes | None:
    assert isinstance(holder, Resources)
    detail = await holder.db.get_user_detail(user_id)
    if detail is None:
        return None
    with timed(Stage.COMPUTE):
        digest = compute_score(detail, rounds=holder.settings.compute_cost)
    with timed(Stage.SERIALIZE):
        result = {
            "user": user_dict(detail),
            "profile": {k: detail[k] for k in ("bio", "country", "score")},
            "settings": {k: detail[k] for k in ("theme", "language", "notifications")},
            "digest": digest,
        }
        return dumps_orjson(result)


@router.get("/users/{user_id}/expensive-computation", openapi_extra=_ID_DOC)
async def expensive_computation(request: Request) -> Response:
    """A three-table join plus CPU work, cached in the multi-level cache when it is on."""
    user_id = user_id_of(request)
    body = await _computation_body(_res(request), user_id)
    if body is None:
        raise HTTPException(404, f"user {user_id} not found")
    return _json(body)


@router.put("/users/{user_id}")
async def update_user(user_id: UserId, update: UserUpdate, request: Request) -> Response:
    """Update name and/or email on the write engine, then invalidate the user's cache keys."""
    res = _res(request)
    row = await res.db.update_user(user_id, update.values())
    if row is None:
        raise HTTPException(404, f"user {user_id} not found")
    if res.cache is not None:
        await res.cache.invalidate(user_keys(user_id))
    return _json(_render_user(res, row))
