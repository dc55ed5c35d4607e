"""The service under hostile requests: oversized bodies, ids out of range, endless distinct keys."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from service.app import MAX_BODY_BYTES
from service.settings import ServiceSettings
from workbench.launcher import ServiceProcess
from workbench.load import run_load
from workbench.monitor import parse_metrics
from workbench.stack import Stack

from .conftest import empty_cache

pytestmark = pytest.mark.slow  # the end-to-end tier: `make test-fast` skips it

L1_SIZE = 100
MAX_PENDING = 16  # well under what 64 connections put in the batcher without a bound (~40)


@pytest.fixture(scope="module")
def service(stack: Stack) -> Iterator[ServiceProcess]:
    """The optimized service with a small L1 and a small batcher queue."""
    settings = ServiceSettings.optimized().replace(
        l1_size=L1_SIZE, batch_max_pending=MAX_PENDING, batch_size=8, server="uvicorn", workers=1
    )
    with ServiceProcess(settings, stack) as running:
        yield running


def test_oversized_body_is_refused_with_413(service: ServiceProcess) -> None:
    url = service.url + "/users/3"
    huge = '{"name": "' + "x" * (MAX_BODY_BYTES + 1) + '"}'
    answer = httpx.put(url, content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "larger than" in answer.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while it streams
        yield b'{"name": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    answer = httpx.put(url, content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    # a body just under the limit is read and judged on its content (name too long: 422)
    fits = '{"name": "' + "x" * (MAX_BODY_BYTES - 20) + '"}'
    assert (
        httpx.put(url, content=fits, headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert httpx.get(service.url + "/health").status_code == 200


def test_lying_content_length_is_refused(service: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", service.port or 0), timeout=5) as sock:
        sock.sendall(
            b"PUT /users/3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999\r\n\r\n{}"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("user_id", ["0", "-1", str(2**62 + 1), "9" * 40, "abc", "1.5"])
def test_ids_out_of_range_are_rejected(service: ServiceProcess, user_id: str) -> None:
    for path in (
        "/users/{}",
        "/users/{}/fast",
        "/users/{}/profile",
        "/users/{}/expensive-computation",
    ):
        answer = httpx.get(service.url + path.format(user_id), timeout=5)
        assert answer.status_code == 422, (path, user_id, answer.text)


# `alone`: beside three other xdist workers the generator's 64 connections did not all reach the
# service at once, the queue of 16 never overflowed and no fallback was counted
@pytest.mark.alone
def test_l1_and_batcher_stay_bounded_under_distinct_keys(service: ServiceProcess) -> None:
    # 2,000 distinct users at a rate the small batcher queue cannot hold: both bounds hold, read
    # from /metrics while the load runs (after it, the queue is empty whatever the bound)
    samples: list[dict[str, float]] = []
    loading = threading.Event()
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            if loading.is_set():
                samples.append(parse_metrics(service.metrics()))
            stop.wait(0.25)

    # An empty L2: with the users cached by earlier tests of the session (l2_ttl is minutes),
    # the L1 misses hit Redis and never reached the batcher (batcher_pending 0.0 throughout)
    empty_cache(service.stack)
    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    before = parse_metrics(service.metrics())
    try:
        loading.set()
        result = run_load(
            service.url + "/users/{id}", connections=64, duration=2, warmup=0.2, processes=1,
            id_max=2_000, progress=False,
        )  # fmt: skip
    finally:
        stop.set()
        scraper.join(5)
    assert result.errors == 0 and result.requests > 200  # a busy shared machine serves less
    # the gauges are published every 0.5 s: a 2 s load gives several values, each under load
    pending = [s["batcher_pending"] for s in samples]
    entries = [s["cache_l1_entries"] for s in samples]
    assert len(samples) >= 5, len(samples)
    assert 0 < max(pending) <= MAX_PENDING, pending  # the queue filled up, and no further
    assert 0 < max(entries) <= L1_SIZE, entries
    # 64 concurrent lookups against a queue of 16: the bound was reached and held (fallbacks)
    fallbacks = "batcher_fallbacks_total{action=fallback}"
    assert samples[-1].get(fallbacks, 0) > before.get(fallbacks, 0)
