"""Bottleneck attribution: each rule fires on its evidence."""

from __future__ import annotations

import pandas as pd
import pytest

from service.settings import ServiceSettings
from workbench.bottleneck import Kind, attribute


@pytest.mark.parametrize(
    ("summary", "server", "settings", "kind"),
    [
        ({"generator_saturated": True, "saturation_reason": "send lag", "saturation_causes": ["send_lag"]}, {}, None, "generator saturated"),
        ({}, {"pool_wait_ms": [5.0, 8.0], "pool_checked_out": [15, 14]}, ServiceSettings(), "database pool exhausted"),
        # the naive pool (5 + 10): overflow connections opened and waited for, CPU not pinned
        ({}, {"pool_wait_ms": [2.0, 21.7], "pool_checked_out": [1, 7], "pool_overflow": [0, 9], "service_cpu_pct": [80.0, 75.0]}, ServiceSettings(), "database pool exhausted"),
        # pool churn: 12 connections opened where the pool keeps 5, short waits on each
        ({}, {"pool_wait_ms": [5.4, 0.1, 4.1], "connects_per_s": [6, 1, 5], "pool_overflow": [0, 1, 0], "service_cpu_pct": [85.0, 69.0, 58.0]}, ServiceSettings(), "database pool exhausted"),
        ({}, {"pool_wait_ms": [0.5, 1.0], "pool_checked_out": [1, 7], "pool_overflow": [0, 2], "service_cpu_pct": [30.0, 30.0]}, ServiceSettings(), "none found"),
        ({}, {"loop_lag_ms": [80.0, 90.0], "service_cpu_pct": [30.0, 30.0]}, ServiceSettings(), "event loop blocked"),
        ({}, {"postgres_cpu_pct": [90.0, 95.0], "service_cpu_pct": [50.0, 40.0]}, ServiceSettings(), "database CPU"),
        ({}, {"service_cpu_pct": [99.0, 98.0], "postgres_cpu_pct": [20.0, 20.0]}, ServiceSettings(), "CPU-bound workers"),
        ({}, {"l1_hit_ratio": [0.1, 0.2], "service_cpu_pct": [30.0, 30.0]}, ServiceSettings(cache=True), "cache misses"),
        ({}, {"service_cpu_pct": [70.0, 70.0], "postgres_cpu_pct": [40.0, 40.0], "machine_cpu_pct": [97.0, 99.0]}, ServiceSettings(), "CPU-bound workers"),
        ({"generator_saturated": True, "saturation_reason": "send lag P99 20 ms > 10 ms - all 64 connections were busy for 9 requests", "saturation_causes": ["send_lag", "connections_busy"]}, {"service_cpu_pct": [99.0, 99.0]}, ServiceSettings(), "CPU-bound workers"),
        ({"generator_saturated": True, "saturation_reason": "send lag - all 64 connections were busy for 9 requests", "saturation_causes": ["send_lag", "connections_busy"]}, {"service_cpu_pct": [20.0, 20.0]}, ServiceSettings(), "connections exhausted"),
        ({}, {"service_cpu_pct": [30.0, 30.0]}, ServiceSettings(), "none found"),
        ({}, {"service_cpu_pct": [99.0, 99.0], "other_cpu_pct": [90.0, 80.0]}, ServiceSettings(), "machine shared"),
    ],
)  # fmt: skip
def test_rules(summary: dict, server: dict, settings: ServiceSettings | None, kind: str) -> None:  # type: ignore[type-arg]
    verdict = attribute(summary, pd.DataFrame(server), settings)
    assert verdict.kind == kind
    assert verdict.sentence


def test_the_generator_busy_is_its_own_doing_even_with_every_connection_busy() -> None:
    # the codes decide, not the wording: a sentence without the old phrases changes nothing
    summary = {"generator_saturated": True, "saturation_reason": "x",
               "saturation_causes": ["send_lag", "connections_busy", "generator_busy"]}  # fmt: skip
    verdict = attribute(summary, pd.DataFrame({"service_cpu_pct": [99.0]}), ServiceSettings())
    assert verdict.kind == Kind.GENERATOR and "x" in verdict.sentence


def test_cpu_rules_cite_the_cost_per_request() -> None:
    busy = pd.DataFrame({"service_cpu_pct": [99.0, 98.0], "postgres_cpu_pct": [20.0, 20.0]})
    verdict = attribute({}, busy, ServiceSettings(), cpu_ms={"service": 0.61, "postgres": 0.2})
    assert verdict.kind == "CPU-bound workers"
    assert "0.61 ms of service CPU per request" in verdict.sentence
    database = pd.DataFrame({"postgres_cpu_pct": [90.0, 95.0], "service_cpu_pct": [50.0, 40.0]})
    verdict = attribute({}, database, ServiceSettings(), cpu_ms={"postgres": 0.35})
    assert "0.35 ms of PostgreSQL CPU per request" in verdict.sentence
    assert "per request)" not in attribute({}, busy, ServiceSettings()).sentence  # not measured
