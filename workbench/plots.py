"""Plotly figures of load results: throughput and latency over time, the percentile spectrum."""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd
import plotly.graph_objects as go

TEMPLATE = "plotly_white"
PERCENTILE_COLUMNS = (("p50_ms", "P50"), ("p95_ms", "P95"), ("p99_ms", "P99"))


class HasSeries(Protocol):
    """A load result: per-second rows and a percentile spectrum."""

    def series(self) -> pd.DataFrame: ...

    def histogram(self) -> pd.DataFrame: ...


def _layout(fig: go.Figure, title: str, x: str, y: str, **extra: Any) -> go.Figure:
    extra.setdefault("height", 380)
    fig.update_layout(
        title=title,
        template=TEMPLATE,
        xaxis_title=x,
        yaxis_title=y,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        **extra,
    )
    return fig


def throughput_over_time(result: HasSeries, *, title: str = "Throughput") -> go.Figure:
    """Completed requests per second, with errors per second."""
    frame = result.series()
    fig = go.Figure()
    fig.add_scatter(x=frame["second"], y=frame["rate"], name="requests/s", mode="lines+markers")
    if "asked_rate" in frame and frame["asked_rate"].notna().any():
        fig.add_scatter(
            x=frame["second"], y=frame["asked_rate"], name="asked rate", line={"dash": "dash"}
        )
    if "errors" in frame and frame["errors"].sum() > 0:
        fig.add_bar(x=frame["second"], y=frame["errors"], name="errors/s", opacity=0.5)
    return _layout(fig, title, "second of the run", "requests per second")


def latency_over_time(result: HasSeries, *, title: str = "Latency percentiles") -> go.Figure:
    """P50, P95 and P99 of each second."""
    frame = result.series()
    fig = go.Figure()
    for column, name in PERCENTILE_COLUMNS:
        if column in frame:
            fig.add_scatter(x=frame["second"], y=frame[column], name=name, mode="lines+markers")
    return _layout(fig, title, "second of the run", "latency (ms)")


def percentile_spectrum(
    results: dict[str, HasSeries] | HasSeries, *, title: str = "Latency by percentile"
) -> go.Figure:
    """HDR percentile spectrum: latency against 1/(1-p) on a log axis, one line per result."""
    named = results if isinstance(results, dict) else {"run": results}
    fig = go.Figure()
    for name, result in named.items():
        spectrum = result.histogram()
        fig.add_scatter(
            x=spectrum["inverse_tail"],
            y=spectrum["latency_ms"],
            name=name,
            mode="lines+markers",
            text=[f"P{p:g}" for p in spectrum["percentile"]],
            hovertemplate="%{text}: %{y:.2f} ms<extra>%{fullData.name}</extra>",
        )
    ticks = [1, 2, 10, 100, 1000, 10000]
    labels = ["P0", "P50", "P90", "P99", "P99.9", "P99.99"]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=labels)
    return _layout(fig, title, "percentile", "latency (ms)")


SERVER_PANELS = (
    ("CPU per process (%)", ("service_cpu_pct", "postgres_cpu_pct", "redis_cpu_pct")),
    ("database pool", ("pool_checked_out", "pool_size", "pool_overflow")),
    ("event-loop lag and pool wait (ms)", ("loop_lag_ms", "pool_wait_ms")),
)


def server_panels(server: pd.DataFrame, *, title: str = "Inside the service") -> go.Figure:
    """CPU per process, pool use and loop lag per second, from a run's server series."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=len(SERVER_PANELS), subplot_titles=[name for name, _ in SERVER_PANELS]
    )
    for col, (_, columns) in enumerate(SERVER_PANELS, start=1):
        for column in columns:
            if column in server and server[column].notna().any():
                fig.add_scatter(
                    x=server["second"], y=server[column], name=column, mode="lines", row=1, col=col
                )
        fig.update_xaxes(title_text="second of the run", row=1, col=col)
    return _layout(fig, title, "second of the run", "", height=360)
