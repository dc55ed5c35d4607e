"""Redis stopped mid-run: reads degrade to the database (cache misses), never to errors, and the
invalidation listener of every worker resubscribes when Redis returns."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.launcher import ServiceProcess
from workbench.monitor import parse_metrics
from workbench.stack import Stack
from workbench.store import Store

from ._fault_window import outage_after_first_second, warm_session
from .conftest import descendants

pytestmark = [
    pytest.mark.slow,
    pytest.mark.window,
]  # the end-to-end tier: `make test-fast` skips it

RATE = 150
DURATION = 6.5  # second 5 after the outage, half a second to spare for its end
SUBSCRIPTIONS = "cache_pubsub_subscriptions_total"


def _subscriptions(service: ServiceProcess) -> float:
    return parse_metrics(service.metrics()).get(SUBSCRIPTIONS, 0.0)


@pytest.mark.parametrize("mode", ["stop", "freeze"])
def test_redis_outage_degrades_to_the_database_and_pubsub_resubscribes(
    stack: Stack, tmp_path: Path, mode: str
) -> None:
    store = Store(tmp_path)
    before = descendants()
    # A small L1: most reads need L2, so its loss shows as database queries.
    settings = ServiceSettings(
        serializer="orjson", cache=True, l1_size=50, pool_pre_ping=True,
        server="gunicorn", workers=2,
    )  # fmt: skip
    experiment = Experiment(
        settings=settings, rate=RATE, connections=32, duration=DURATION, warmup=0.5, processes=1,
        name=f"redis {mode}",
    )  # fmt: skip
    with warm_session() as session, ServiceProcess(settings, stack) as service:
        deadline = time.monotonic() + 10
        while _subscriptions(service) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # /health answers once the first worker is up
        subscribed_before = _subscriptions(service)
        assert subscribed_before >= 2  # one listener per worker
        # about seconds 1-4.6: second 3 inside the outage (its server samples too), 5 on after it
        with outage_after_first_second(stack, "redis", duration=3.5, mode=mode) as outage:
            run = experiment.run(
                stack, store=store, service=service, session=session, progress=False
            )
        # Every worker's listener subscribes again once Redis is back: after a stop its
        # connection was closed; a frozen Redis left no PING answered, so it was given up.
        deadline = time.monotonic() + 5
        while _subscriptions(service) < subscribed_before + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _subscriptions(service) >= subscribed_before + 2
        if mode == "freeze":  # L2 was skipped, not waited on
            assert parse_metrics(service.metrics()).get("cache_l2_pauses_total", 0) >= 1
        _invalidation_reaches_every_worker(service)
        _l2_hits_again(service, stack)
    assert descendants() - set(stack.pids().values()) <= before  # Redis has a new pid
    down, up = outage.seconds(run.manifest["window_started_at"])
    assert down > 0 and up < DURATION - 1, (down, up)
    summary = run.summary()
    frame = run.to_frame().set_index("second")
    print(f"outage {down:.2f}-{up:.2f} s\n" + frame[
        ["sent", "completed", "errors", "p99_ms", "l2_hit_ratio", "queries_per_request"]
    ].to_string())  # fmt: skip
    assert run.status == "finished" and summary["errors"] == 0, frame.to_string()
    # A server row is the mean of the 1 s samples whose middle falls in its second: they span
    # from half a second before it to half a second after it. A second's margin before the
    # outage, a second and a half after it.
    inside = frame[(frame.index >= down + 1) & (frame.index + 1.5 <= up)]
    assert not inside.empty and (inside["l2_hit_ratio"] == 0).all(), frame.to_string()
    assert (inside["queries_per_request"] > 0.5).all(), frame.to_string()
    assert (inside["completed"] > 0.5 * RATE).all(), frame.to_string()  # a shared 2-core box
    # a frozen Redis costs one socket timeout per pause, not one per request
    assert (inside["p99_ms"] < 1000).all(), frame.to_string()
    # L2 is consulted again once Redis is back (a ratio, not NaN: lookups reached Redis); hits
    # themselves depend on ids repeating across workers within seconds, so they are not asserted.
    assert frame.loc[int(up) + 1 :, "l2_hit_ratio"].notna().any(), frame.to_string()
    assert (frame.loc[int(up) + 1 :, "errors"] == 0).all()


def _l2_hits_again(service: ServiceProcess, stack: Stack) -> None:
    """After the outage Redis serves hits again: ids read once, pushed out of the L1s, read again."""
    ids = range(stack.users - 199, stack.users + 1)
    with httpx.Client(timeout=5) as client:
        for i in ids:  # L1 holds 50 per worker: most of the first ids leave it
            assert client.get(f"{service.url}/users/{i}").status_code == 200
        hits = parse_metrics(service.metrics()).get("cache_hits_total{level=l2}", 0.0)
        for i in ids[:20]:  # new connections: spread over both workers
            client.get(f"{service.url}/users/{i}", headers={"Connection": "close"})
    assert parse_metrics(service.metrics()).get("cache_hits_total{level=l2}", 0.0) > hits


def _invalidation_reaches_every_worker(service: ServiceProcess) -> None:
    """After an update, no worker serves the old name from its L1 (pub/sub carried the news)."""
    url = service.url + "/users/11"
    close = {"Connection": "close"}  # each request on a new connection: spread over both workers
    with httpx.Client(timeout=5) as client:
        for _ in range(20):  # both workers cache the user in L1
            client.get(url, headers=close)
        original = client.get(url).json()["name"]
        name = f"renamed-{time.monotonic_ns()}"
        assert client.put(url, json={"name": name}).status_code == 200
        try:
            time.sleep(0.2)
            seen = {client.get(url, headers=close).json()["name"] for _ in range(20)}
            assert seen == {name}
        finally:  # the session's database is shared with other tests: leave it as seeded
            assert client.put(url, json={"name": original}).status_code == 200
