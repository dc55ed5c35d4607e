"""Shared fixtures: one real stack (PostgreSQL + Redis + fake upstream) for the whole session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from workbench._aio import run_sync
from workbench.stack import Stack

STACK_USERS = 1000


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """PostgreSQL, Redis and the fake upstream, seeded with 1000 users."""
    with Stack(users=STACK_USERS, progress=lambda _: None) as running:
        run_sync(_reset(running))
        yield running


async def _reset(stack: Stack) -> None:
    """Undo what earlier runs wrote (the data folder outlives a run) and flush Redis."""
    conn = await asyncpg.connect(stack.url)
    try:
        await conn.execute(
            "UPDATE users SET name = 'User ' || id, email = 'user' || id || '@example.com', "
            "updated_at = created_at WHERE updated_at <> created_at"
        )
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(stack.redis)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called name whose labels include labels (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
def metric() -> Callable[..., float]:
    """metric(text, name, **labels): a value from a Prometheus page."""
    return metric_value
