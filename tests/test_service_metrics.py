"""The service's per-request metrics, added up in memory: a flush shows what per-request updates would."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service import metrics
from tests._prom import metric

LATENCIES = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.04, 7.0]


def _page() -> str:
    return generate_latest().decode()


def test_a_flush_exposes_what_observing_each_request_would() -> None:
    route = f"/test-{uuid.uuid4().hex[:8]}"
    tally = metrics.Tally()
    for seconds in LATENCIES:
        tally.request(route, 200, seconds)
    tally.request(route, 404, 0.001)
    assert metric(_page(), "http_requests_total", route=route, status="200") == 0  # not yet
    tally.flush()
    page = _page()
    assert metric(page, "http_requests_total", route=route, status="200") == len(LATENCIES)
    assert metric(page, "http_requests_total", route=route, status="404") == 1
    # the same values observed one at a time into a histogram of the same buckets
    registry = CollectorRegistry()
    reference = Histogram("ref", "", buckets=metrics.LATENCY_BUCKETS, registry=registry)
    for seconds in [*LATENCIES, 0.001]:
        reference.observe(seconds)
    expected = generate_latest(registry).decode()
    for le in [*(str(b) for b in metrics.LATENCY_BUCKETS), "+Inf"]:
        got = metric(page, "http_request_duration_seconds_bucket", route=route, le=le)
        assert got == metric(expected, "ref_bucket", le=le), le
    assert metric(page, "http_request_duration_seconds_sum", route=route) == metric(
        expected, "ref_sum"
    )
    tally.flush()  # nothing added since: nothing counted twice
    assert metric(_page(), "http_requests_total", route=route, status="200") == len(LATENCIES)


def test_counts_and_in_flight_reach_prometheus_at_the_flush() -> None:
    tally = metrics.Tally()
    before = metric(_page(), "cache_hits_total", level="l1")
    tally.count(metrics.CACHE_HIT["l1"])
    tally.count(metrics.CACHE_HIT["l1"], 2)
    tally.in_flight = 3
    tally.flush()
    page = _page()
    assert metric(page, "cache_hits_total", level="l1") == before + 3
    assert metric(page, "http_requests_in_flight") == 3
    tally.in_flight = 0
    tally.flush()
    assert metric(_page(), "http_requests_in_flight") == 0


def test_the_page_shows_every_request_answered_before_it() -> None:
    route = f"/test-{uuid.uuid4().hex[:8]}"
    metrics.TALLY.request(route, 200, 0.001)
    body, _ = metrics.render()
    assert metric(body.decode(), "http_requests_total", route=route, status="200") == 1


def test_flush_forever_flushes_while_running_and_once_more_when_cancelled() -> None:
    route = f"/test-{uuid.uuid4().hex[:8]}"
    tally = metrics.Tally()

    async def scenario() -> tuple[float, float]:
        task = asyncio.create_task(tally.flush_forever(0.01))
        tally.request(route, 200, 0.001)
        await asyncio.sleep(0.05)
        during = metric(_page(), "http_requests_total", route=route, status="200")
        tally.request(route, 200, 0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return during, metric(_page(), "http_requests_total", route=route, status="200")

    assert asyncio.run(scenario()) == (1, 2)
