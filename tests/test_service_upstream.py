"""The upstream client (shared async vs blocking) and the fake upstream it calls."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from service.settings import ServiceSettings
from service.upstream import Upstream, UpstreamError
from service.upstream_fake import answer_for
from workbench.launcher import ServiceProcess
from workbench.stack import Stack


def test_fake_upstream_answers_json_and_404(stack: Stack) -> None:
    assert stack.upstream_url
    answer = httpx.get(f"{stack.upstream_url}/user/7")
    assert answer.status_code == 200
    assert answer.json() == answer_for(7)
    assert httpx.get(f"{stack.upstream_url}/nothing").status_code == 404


@pytest.mark.parametrize("mode", ["shared", "blocking"])
def test_both_modes_return_the_upstream_answer(stack: Stack, mode: str) -> None:
    assert stack.upstream_url

    async def scenario() -> list[dict[str, object]]:
        upstream = Upstream(stack.upstream_url or "", mode=mode, timeout=2)
        await upstream.start()
        try:
            return await asyncio.gather(*(upstream.get_user(i) for i in range(1, 11)))
        finally:
            await upstream.close()

    assert asyncio.run(scenario()) == [answer_for(i) for i in range(1, 11)]


@pytest.mark.parametrize("mode", ["shared", "blocking"])
def test_a_silent_upstream_times_out_within_the_bound(mode: str) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]

        async def scenario() -> None:
            upstream = Upstream(f"http://127.0.0.1:{port}", mode=mode, timeout=0.2)
            await upstream.start()
            try:
                await upstream.get_user(1)
            finally:
                await upstream.close()

        start = time.monotonic()
        with pytest.raises(UpstreamError) as info:
            asyncio.run(scenario())
        assert info.value.kind == "timeout"
        assert time.monotonic() - start < 1.5


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        Upstream("http://127.0.0.1:1", mode="threaded")


def test_profile_joins_user_and_upstream_data(stack: Stack) -> None:
    with ServiceProcess(ServiceSettings(upstream_mode="shared"), stack) as svc:
        answer = httpx.get(f"{svc.url}/users/9/profile")
        assert answer.status_code == 200
        body = answer.json()
        assert body["user"]["id"] == 9 and body["external"] == answer_for(9)
        assert httpx.get(f"{svc.url}/users/99999/profile").status_code == 404


def _lag_and_throughput(
    stack: Stack, mode: str, metric: Callable[..., float]
) -> tuple[float, float]:
    """(slow loop-lag samples, seconds) for 120 profile requests, 30 at a time."""
    with ServiceProcess(ServiceSettings(upstream_mode=mode), stack) as svc:

        async def load() -> float:
            async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
                start = time.monotonic()
                for _ in range(4):
                    answers = await asyncio.gather(
                        *(client.get(f"/users/{i}/profile") for i in range(1, 31))
                    )
                    assert {a.status_code for a in answers} == {200}
                return time.monotonic() - start

        before = svc.metrics()
        elapsed = asyncio.run(load())
        time.sleep(0.15)  # let the lag watcher take one more sample
        after = svc.metrics()
        total = "event_loop_lag_seconds_count"
        fast = "event_loop_lag_seconds_bucket"
        slow_before = metric(before, total) - metric(before, fast, le="0.025")
        slow_after = metric(after, total) - metric(after, fast, le="0.025")
        return slow_after - slow_before, elapsed


def test_blocking_upstream_raises_event_loop_lag(
    stack: Stack, metric: Callable[..., float]
) -> None:
    slow_blocking, _ = _lag_and_throughput(stack, "blocking", metric)
    slow_shared, _ = _lag_and_throughput(stack, "shared", metric)
    # Each blocking call stalls the loop ~5 ms; 30 queued ones stall it ~150 ms.
    assert slow_blocking >= 1
    assert slow_shared <= slow_blocking / 2
