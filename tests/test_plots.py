"""Plots: figures carry the measured numbers."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from workbench import plots


@dataclass
class Measured:
    frame: pd.DataFrame
    spectrum: pd.DataFrame

    def series(self) -> pd.DataFrame:
        return self.frame

    def histogram(self) -> pd.DataFrame:
        return self.spectrum


RESULT = Measured(
    pd.DataFrame({"second": [0, 1, 2], "rate": [10, 20, 30], "errors": [0, 1, 0],
                  "p50_ms": [1, 2, 3], "p95_ms": [2, 3, 4], "p99_ms": [3, 4, 5]}),
    pd.DataFrame({"percentile": [50, 99], "latency_ms": [1.0, 5.0], "inverse_tail": [2, 100]}),
)  # fmt: skip


def test_throughput_plots_rate_and_errors() -> None:
    fig = plots.throughput_over_time(RESULT)
    assert list(fig.data[0].y) == [10, 20, 30]
    assert fig.data[1].name == "errors/s"


def test_latency_over_time_has_three_percentiles() -> None:
    assert [t.name for t in plots.latency_over_time(RESULT).data] == ["P50", "P95", "P99"]


def test_spectrum_uses_log_inverse_tail_axis() -> None:
    fig = plots.percentile_spectrum({"a": RESULT, "b": RESULT})
    assert fig.layout.xaxis.type == "log"
    assert [t.name for t in fig.data] == ["a", "b"]


def test_anatomy_stacks_each_stage_per_run() -> None:
    from workbench import anatomy as _anatomy

    table = pd.DataFrame(
        {
            "mean_ms": [0.5, 2.0, 0.1, 2.6, 2.5],
            "p50_ms": [0.4, 1.8, float("nan"), 2.5, 2.4],
            "p95_ms": [1.0, 4.0, float("nan"), 5.0, 4.9],
            "share": [0.19, 0.77, 0.04, 1.0, 0.96],
            "requests_pct": [100, 100, float("nan"), 100, 100],
        },
        index=pd.Index(["queue", "query", _anatomy.OTHER, "total", "accounted"], name="stage"),
    )
    fig = plots.anatomy({"naive": table, "+pool": table.drop(index=["queue"])})
    names = [trace.name for trace in fig.data]
    assert names == ["waiting for the event loop", "query", "unaccounted"]  # no totals stacked
    assert list(fig.data[0].x) == [0.5, 0.0]  # +pool has no queue stage
    assert list(fig.data[1].y) == ["naive", "+pool"]
    assert fig.layout.barmode == "stack"


def test_ladder_has_error_bars_beside_the_published_ratio() -> None:
    table = pd.DataFrame(
        {"step": ["naive", "+pool"], "ratio_to_naive": [1.0, 1.5], "ratio_ci_low": [0.9, 1.2],
         "ratio_ci_high": [1.1, 1.9], "published_ratio": [1.0, 1.6]}
    )  # fmt: skip
    fig = plots.ladder(table)
    measured, published = fig.data
    assert list(measured.error_y.array) == pytest.approx([0.1, 0.4])
    assert list(measured.error_y.arrayminus) == pytest.approx([0.1, 0.3])
    assert list(published.y) == [1.0, 1.6] and "published" in published.name


def test_cpu_per_request_stacks_server_components_and_marks_the_generator() -> None:
    summary = pd.DataFrame(
        {"cpu_ms_per_request_service": [1.0, 0.5], "cpu_ms_per_request_postgres": [0.4, 0.2],
         "cpu_ms_per_request_redis": [0.0, 0.1], "cpu_ms_per_request_generator": [0.05, 0.05],
         "cpu_ms_per_request_server": [1.4, 0.8], "server": ["uvicorn", "gunicorn"]},
        index=["naive", "+cache"],
    )  # fmt: skip
    fig = plots.cpu_per_request(summary)
    assert fig.layout.barmode == "stack"
    names = [t.name for t in fig.data]
    assert names == ["service", "PostgreSQL", "Redis", "server side", "generator (client side)"]
    assert list(fig.data[0].x) == ["naive", "+cache"] and list(fig.data[1].y) == [0.4, 0.2]
    assert list(fig.data[3].text) == ["1.40 ms", "0.80 ms"]  # the stack's total above each bar
    # one run, columns named by component
    one = plots.cpu_per_request(pd.DataFrame([{"service": 0.7, "postgres": 0.3}], index=["run"]))
    assert [t.name for t in one.data] == ["service", "PostgreSQL", "server side"]
    # runs as {name: RunResult.cpu_ms_per_request()}
    runs = plots.cpu_per_request({"a": {"service": 0.7, "server": 0.7}, "b": {"service": 0.5}})
    assert list(runs.data[0].x) == ["a", "b"] and list(runs.data[0].y) == [0.7, 0.5]
