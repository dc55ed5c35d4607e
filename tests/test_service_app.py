"""The service's endpoints, run as real processes against the real stack."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from service.routes import compute_score
from service.settings import ServiceSettings
from tests._prom import metric
from workbench._aio import run_sync
from workbench.launcher import ServiceProcess
from workbench.seed import COUNTRIES, LANGUAGES, user_row
from workbench.stack import Stack


@pytest.fixture(scope="module")
def naive(stack: Stack) -> Iterator[ServiceProcess]:
    """The service with the naive settings (Pydantic serializer, nothing cached)."""
    with ServiceProcess(ServiceSettings.naive(), stack) as svc:
        yield svc


@pytest.fixture(scope="module")
def tuned(stack: Stack) -> Iterator[ServiceProcess]:
    """One uvicorn worker with every other optimization on."""
    settings = ServiceSettings.optimized().replace(server="uvicorn", workers=1)
    with ServiceProcess(settings, stack) as svc:
        yield svc


def _db_user(stack: Stack, user_id: int) -> tuple[str, str]:
    async def fetch() -> tuple[str, str]:
        conn = await asyncpg.connect(stack.url)
        try:
            row = await conn.fetchrow(
                "SELECT name, email FROM workbench.users WHERE id = $1", user_id
            )
            return row["name"], row["email"]
        finally:
            await conn.close()

    return run_sync(fetch())


def test_health_and_metrics(naive: ServiceProcess) -> None:
    health = httpx.get(f"{naive.url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    page = naive.metrics()
    for name in ("http_requests_total", "db_pool_checkout_seconds", "event_loop_lag_seconds"):
        assert name in page


def test_get_user_returns_the_seeded_row(naive: ServiceProcess) -> None:
    i, name, email, created, _ = user_row(42)
    answer = httpx.get(f"{naive.url}/users/42")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "id": i,
        "name": name,
        "email": email,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


@pytest.mark.parametrize("user_id", [3, 500, 1000])
def test_pydantic_and_orjson_paths_are_byte_for_byte_equal(
    naive: ServiceProcess, tuned: ServiceProcess, user_id: int
) -> None:
    pydantic = httpx.get(f"{naive.url}/users/{user_id}").content
    assert httpx.get(f"{naive.url}/users/{user_id}/fast").content == pydantic
    assert httpx.get(f"{tuned.url}/users/{user_id}").content == pydantic  # orjson + caches
    assert httpx.get(f"{tuned.url}/users/{user_id}/fast").content == pydantic


@pytest.mark.parametrize("path", ["abc", "-1", "0", "1.5", str(2**63)])
@pytest.mark.parametrize("suffix", ["", "/fast", "/full", "/profile", "/expensive-computation"])
def test_bad_ids_are_422(naive: ServiceProcess, path: str, suffix: str) -> None:
    answer = httpx.get(f"{naive.url}/users/{path}{suffix}")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path", "user_id"]


@pytest.mark.parametrize("suffix", ["", "/fast", "/full", "/profile", "/expensive-computation"])
def test_unknown_user_is_404(naive: ServiceProcess, tuned: ServiceProcess, suffix: str) -> None:
    for svc in (naive, tuned):
        answer = httpx.get(f"{svc.url}/users/5000{suffix}")
        assert answer.status_code == 404 and "5000" in answer.json()["detail"]
    assert httpx.put(f"{naive.url}/users/5000", json={"name": "x"}).status_code == 404


def test_full_user_nests_profile_and_settings_the_same_by_both_serializers(
    naive: ServiceProcess, tuned: ServiceProcess
) -> None:
    pydantic = httpx.get(f"{naive.url}/users/88/full")
    assert pydantic.status_code == 200
    body = pydantic.json()
    assert body["profile"]["country"] == COUNTRIES[88 % 10]
    assert body["settings"]["language"] == LANGUAGES[88 % 5]
    assert set(body) == {"id", "name", "email", "created_at", "profile", "settings"}
    assert httpx.get(f"{tuned.url}/users/88/full").content == pydantic.content  # orjson, cached
    queries = metric(tuned.metrics(), "db_queries_total")
    assert httpx.get(f"{tuned.url}/users/88/full").content == pydantic.content
    assert metric(tuned.metrics(), "db_queries_total") == queries  # served from L1
    # a write invalidates the nested response too
    name = f"Full {uuid.uuid4().hex[:8]}"
    assert httpx.put(f"{tuned.url}/users/88", json={"name": name}).status_code == 200
    assert httpx.get(f"{tuned.url}/users/88/full").json()["name"] == name


def test_expensive_computation_is_deterministic_and_cached(
    naive: ServiceProcess, tuned: ServiceProcess
) -> None:
    first = httpx.get(f"{naive.url}/users/77/expensive-computation")
    assert first.status_code == 200
    body = first.json()
    assert body["profile"]["country"] == COUNTRIES[77 % 10]
    assert body["settings"]["language"] == LANGUAGES[77 % 5]
    detail = {**body["user"], **body["profile"]}
    assert body["digest"] == compute_score(detail, rounds=ServiceSettings().compute_cost)
    assert httpx.get(f"{tuned.url}/users/77/expensive-computation").content == first.content
    queries = metric(tuned.metrics(), "db_queries_total")
    for _ in range(3):
        httpx.get(f"{tuned.url}/users/77/expensive-computation")
    assert metric(tuned.metrics(), "db_queries_total") == queries  # served from L1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"email": 12}, "email"),
        ({"name": "Ok", "role": "admin"}, "role"),
        ({}, None),
        # bytes PostgreSQL cannot store: a NUL character, a lone surrogate (not UTF-8)
        ({"name": "Ann\x00ie"}, "name"),
        ({"email": "ann\x00ie@example.com"}, "email"),
        ({"name": "\x00"}, "name"),
        ({"name": "Ann\ud800ie"}, "name"),
    ],
)
def test_put_with_a_bad_body_is_422_naming_the_field_and_writes_nothing(
    naive: ServiceProcess, stack: Stack, body: dict[str, object], field: str | None
) -> None:
    before = _db_user(stack, 321)
    # json.dumps escapes NUL and surrogates as \\u0000 / \\ud800, as any JSON client may send them
    content = json.dumps(body).encode()
    answer = httpx.put(
        f"{naive.url}/users/321", content=content, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    locations = [error["loc"] for error in answer.json()["detail"]]
    if field is not None:
        assert ["body", field] in locations
    assert _db_user(stack, 321) == before


def test_put_without_json_is_422(naive: ServiceProcess) -> None:
    answer = httpx.put(f"{naive.url}/users/321", content=b"name=x")
    assert answer.status_code == 422


def test_put_updates_the_row_and_the_cached_reads(tuned: ServiceProcess, stack: Stack) -> None:
    user = 654
    old = httpx.get(f"{tuned.url}/users/{user}").json()
    old_computation = httpx.get(f"{tuned.url}/users/{user}/expensive-computation").json()
    email = f"new-{uuid.uuid4().hex[:6]}@example.org"
    answer = httpx.put(f"{tuned.url}/users/{user}", json={"email": email})
    assert answer.status_code == 200
    assert answer.json() == {**old, "email": email}
    assert _db_user(stack, user) == (old["name"], email)
    assert httpx.get(f"{tuned.url}/users/{user}").json()["email"] == email
    computation = httpx.get(f"{tuned.url}/users/{user}/expensive-computation").json()
    assert computation["user"]["email"] == email
    assert computation["digest"] != old_computation["digest"]


@pytest.mark.alone
@pytest.mark.slow
def test_pool_gauges_move_under_concurrent_load(naive: ServiceProcess) -> None:
    async def load() -> tuple[float, float]:
        peak_out = peak_overflow = 0.0
        stop = asyncio.Event()  # the users stop once both gauges moved, or after 1.5 s
        async with (
            httpx.AsyncClient(base_url=naive.url, timeout=10) as client,
            httpx.AsyncClient(base_url=naive.url, timeout=10) as scraper,
        ):
            deadline = time.monotonic() + 1.5

            async def user() -> None:
                while not stop.is_set():
                    await client.get(f"/users/{1 + int(time.monotonic() * 1e6) % 1000}")

            tasks = [asyncio.create_task(user()) for _ in range(60)]
            while time.monotonic() < deadline and (peak_out < 3 or peak_overflow < 1):
                page = (await scraper.get("/metrics")).text
                peak_out = max(peak_out, metric(page, "db_pool_checked_out", engine="write"))
                peak_overflow = max(peak_overflow, metric(page, "db_pool_overflow", engine="write"))
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
        return peak_out, peak_overflow

    idle = naive.metrics()
    assert metric(idle, "db_pool_checked_out", engine="write") <= 1  # maybe a /health probe
    peak_out, peak_overflow = asyncio.run(load())
    assert peak_out >= 3
    assert peak_overflow >= 1  # pool_size 5 is not enough for 60 concurrent requests
    deadline = time.monotonic() + 0.6  # the connections go back to the pool within 0.6 s
    while (out := metric(naive.metrics(), "db_pool_checked_out", engine="write")) > 1:
        assert time.monotonic() < deadline, out
        time.sleep(0.05)


@pytest.mark.slow
def test_two_gunicorn_workers_serve_and_merge_their_metrics(stack: Stack) -> None:
    settings = ServiceSettings(server="gunicorn", workers=2, cache=True)
    with ServiceProcess(settings, stack) as svc:
        assert len(svc.pids()) >= 3  # master + 2 workers

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
                answers = await asyncio.gather(*(client.get(f"/users/{i}") for i in range(1, 101)))
                return [a.status_code for a in answers]

        assert asyncio.run(burst()) == [200] * 100
        page = svc.metrics()
        assert metric(page, "http_requests_total", route="/users/{user_id}", status="200") == 100
        assert metric(page, "db_pool_size", engine="write") == 2 * settings.pool_size


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_gc_freeze_moves_the_started_heap_out_of_the_collectors_reach(
    stack: Stack, naive: ServiceProcess, server: str
) -> None:
    settings = ServiceSettings(
        gc_freeze=True, server=server, workers=2 if server == "gunicorn" else 1
    )
    with ServiceProcess(settings, stack) as svc:
        assert httpx.get(f"{svc.url}/users/1").status_code == 200
        assert metric(svc.metrics(), "gc_frozen_objects") > 10_000  # the app and its libraries
    assert metric(naive.metrics(), "gc_frozen_objects") == 0


@pytest.mark.slow
def test_model_cache_skips_serialization_and_follows_updates(stack: Stack) -> None:
    with ServiceProcess(ServiceSettings(model_cache=True), stack) as svc:
        first = httpx.get(f"{svc.url}/users/777").content
        assert httpx.get(f"{svc.url}/users/777").content == first
        page = svc.metrics()
        assert metric(page, "cache_misses_total", level="model") == 1
        assert metric(page, "cache_hits_total", level="model") == 1
        name = f"Model {uuid.uuid4().hex[:6]}"
        assert httpx.put(f"{svc.url}/users/777", json={"name": name}).status_code == 200
        assert httpx.get(f"{svc.url}/users/777").json()["name"] == name
