"""Plots: figures carry the measured numbers."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

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
