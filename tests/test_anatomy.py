"""A run's anatomy: reading the service's stage histograms, and a real run's stages adding up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.settings import ServiceSettings
from workbench import anatomy
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store

from .conftest import empty_cache


def _page(counts: dict[str, list[int]], sums: dict[str, float]) -> str:
    """Prometheus text of anatomy_seconds with bounds 1, 2, 4 ms and +Inf (per-bucket counts)."""
    lines = []
    for stage, row in counts.items():
        cumulative = 0
        for le, count in zip(("0.001", "0.002", "0.004", "+Inf"), row, strict=True):
            cumulative += count
            lines.append(f'anatomy_seconds_bucket{{le="{le}",stage="{stage}"}} {cumulative}')
        lines.append(f'anatomy_seconds_count{{stage="{stage}"}} {cumulative}')
        lines.append(f'anatomy_seconds_sum{{stage="{stage}"}} {sums[stage]}')
    return "# TYPE anatomy_seconds histogram\n" + "\n".join(lines) + "\n"


def _snap(counts: dict[str, list[int]], sums: dict[str, float]) -> anatomy.Snapshot:
    snap = anatomy.snapshot(text_string_to_metric_families(_page(counts, sums)))
    assert snap is not None
    return snap


def test_a_window_is_the_difference_of_two_scrapes_and_percentiles_interpolate() -> None:
    before = _snap(
        {"query": [5, 0, 0, 0], "total": [0, 5, 0, 0], "accounted": [0, 5, 0, 0]},
        {"query": 0.004, "total": 0.008, "accounted": 0.0075},
    )
    after = _snap(  # pool: a stage first seen after `before`
        {
            "query": [5, 10, 0, 0],
            "pool": [0, 10, 0, 0],
            "total": [0, 5, 10, 0],
            "accounted": [0, 5, 10, 0],
        },
        {"query": 0.004 + 0.015, "pool": 0.013, "total": 0.008 + 0.03, "accounted": 0.0075 + 0.028},
    )
    window = after.minus(before)
    assert window.requests() == 10
    # the 10 queries of the window lie between 1 and 2 ms: the median at the middle
    assert window.quantile("query", 0.5) == pytest.approx(0.0015)
    table = anatomy.frame(window)
    assert table.loc["query", "mean_ms"] == pytest.approx(1.5)
    assert table.loc["total", "mean_ms"] == pytest.approx(3.0)
    assert table.loc["query", "share"] == pytest.approx(0.5)
    assert table.loc["other", "mean_ms"] == pytest.approx(0.2)  # total 3.0 - accounted 2.8
    assert table.loc["query", "requests_pct"] == pytest.approx(100)
    assert "batcher" not in table.index  # not gone through
    assert math.isclose(anatomy.stages(table)["mean_ms"].sum(), 3.0)
    assert anatomy.largest(table) == "query"
    assert "query 1.50 of 3.00 ms" in anatomy.sentence(table)


def test_the_window_starts_at_the_first_scrape_inside_it() -> None:
    def snap(n: int) -> anatomy.Snapshot:
        return _snap({"total": [n, 0, 0, 0]}, {"total": n * 0.0005})

    scrapes = [(10.0, snap(3)), (11.0, snap(7)), (12.0, snap(20))]
    assert anatomy.between(scrapes, start=10.5).requests() == 13
    assert anatomy.between(scrapes, start=11.5).requests() == 13  # none inside but the last
    assert anatomy.between([], start=1.0) is None
    assert anatomy.frame(None).empty


@pytest.mark.alone
@pytest.mark.slow
def test_a_real_runs_stages_add_up_to_its_service_time(stack: Stack, tmp_path: Path) -> None:
    settings = ServiceSettings.optimized().replace(server="uvicorn", workers=1, preload=False)
    store = Store(tmp_path)
    empty_cache(stack)  # users cached by earlier tests would send no query to the database
    run = Experiment(settings=settings, rate=150, duration=2, warmup=0.5, connections=32).run(
        stack, store=store, progress=False
    )
    table = run.anatomy()
    assert {"queue", "routing", "l1", "query", "serialize", "response"} <= set(table.index)
    times = run.service_time_ms()
    # the median request's stages cover its time in the service within 15%
    assert times["accounted_p50_ms"] == pytest.approx(times["total_p50_ms"], rel=0.15)
    assert table["mean_ms"].sum() == pytest.approx(times["total_mean_ms"], rel=1e-6)
    assert table.loc["other", "share"] < 0.15
    # the window holds the measured requests, not the warm-up's
    assert abs(table.loc["query", "requests_pct"]) <= 100
    row = run.summary()
    assert row["anatomy_query_ms"] == pytest.approx(table.loc["query", "mean_ms"])
    assert "Per request in the service" in run.manifest["bottleneck"]["sentence"]
    again = store.load(run.run_id)
    assert again.anatomy_ms() == pytest.approx(run.anatomy_ms())
