"""Shared fixtures: one real stack (PostgreSQL + Redis + fake upstream) for the whole session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from workbench.stack import Stack

STACK_USERS = 1000


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """PostgreSQL, Redis and the fake upstream, seeded with 1000 users."""
    with Stack(users=STACK_USERS, progress=lambda _: None) as running:
        yield running


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
