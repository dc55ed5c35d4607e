"""Plotly figures of load results: throughput and latency over time, the percentile spectrum."""

from __future__ import annotations

from collections.abc import Mapping
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


# Seconds are counted from 1, as the per-second text lines count them ("2.0s" ends the second
# second): a frame's 0-based `second` column is drawn at second + 1, on whole-number ticks.
SECOND_AXIS = "second of the run"


def seconds(frame: pd.DataFrame) -> pd.Series:
    """The x of each per-second row: 1 for the first measured second."""
    return frame["second"] + 1


def _second_ticks(fig: go.Figure, frame: pd.DataFrame, **where: Any) -> None:
    """Whole seconds on the x axis (never 0.5), one tick each while they fit."""
    count = int(frame["second"].max()) + 1 if len(frame) else 1
    fig.update_xaxes(tickformat="d", tick0=1, dtick=1 if count <= 20 else None, **where)


def throughput_over_time(result: HasSeries, *, title: str = "Throughput") -> go.Figure:
    """Completed requests per second, with errors per second."""
    frame = result.series()
    fig = go.Figure()
    x = seconds(frame)
    fig.add_scatter(x=x, y=frame["rate"], name="requests/s", mode="lines+markers")
    if "asked_rate" in frame and frame["asked_rate"].notna().any():
        fig.add_scatter(x=x, y=frame["asked_rate"], name="asked rate", line={"dash": "dash"})
    if "errors" in frame and frame["errors"].sum() > 0:
        fig.add_bar(x=x, y=frame["errors"], name="errors/s", opacity=0.5)
    _second_ticks(fig, frame)
    return _layout(fig, title, SECOND_AXIS, "requests per second")


def latency_over_time(result: HasSeries, *, title: str = "Latency percentiles") -> go.Figure:
    """P50, P95 and P99 of each second."""
    frame = result.series()
    fig = go.Figure()
    for column, name in PERCENTILE_COLUMNS:
        if column in frame:
            fig.add_scatter(x=seconds(frame), y=frame[column], name=name, mode="lines+markers")
    _second_ticks(fig, frame)
    return _layout(fig, title, SECOND_AXIS, "latency (ms)")


# Log-axis ticks for milliseconds, every label a full number (plotly's default writes 500 as "5").
LOG_MS_TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 60000]


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


def pool_names(settings: Mapping[str, Any] | None) -> dict[str, str]:
    """Legend names of the pool gauges, saying what they sum: every engine's pool in every worker."""
    if not settings:
        every = "all pools of all workers"
        return {
            "pool_checked_out": f"connections in use ({every})",
            "pool_size": f"pool_size summed ({every})",
            "pool_overflow": f"overflow open ({every})",
        }
    workers = int(settings.get("workers", 1))
    size, overflow = int(settings["pool_size"]), int(settings["max_overflow"])
    sizes, overflows = f"write {size}", f"write {overflow}"
    if settings.get("read_split"):
        size += int(settings["read_pool_size"])
        overflow += int(settings["read_max_overflow"])
        sizes += f" + read {settings['read_pool_size']}"
        overflows += f" + read {settings['read_max_overflow']}"
    times = f" × {workers} workers" if workers > 1 else ""
    pools = "write + read pools" if settings.get("read_split") else "the pool"
    return {
        "pool_checked_out": f"connections in use ({pools}{times})",
        "pool_size": f"pool_size: {sizes}{times} = {size * workers}",
        "pool_overflow": f"overflow open (max {overflows}{times} = {overflow * workers})",
    }


def server_panels(
    server: pd.DataFrame,
    *,
    settings: Mapping[str, Any] | None = None,
    title: str = "Inside the service",
) -> go.Figure:
    """CPU per process, pool use and loop lag per second, from a run's server series.

    The pool gauges are sums over the service's engines (write, read) and worker processes;
    with the run's settings (`run.manifest["settings"]`) the legend says which pools they add.
    """
    from plotly.subplots import make_subplots

    names = pool_names(settings)
    titles = [name for name, _ in SERVER_PANELS]
    titles[1] = "database pool (summed over pools and workers)"
    fig = make_subplots(rows=1, cols=len(SERVER_PANELS), subplot_titles=titles)
    x = seconds(server) if "second" in server else None
    for col, (_, columns) in enumerate(SERVER_PANELS, start=1):
        for column in columns:
            if column in server and server[column].notna().any():
                fig.add_scatter(
                    x=x, y=server[column], name=names.get(column, column), mode="lines",
                    row=1, col=col,
                )  # fmt: skip
        fig.update_xaxes(title_text=SECOND_AXIS, row=1, col=col)
    if x is not None:
        _second_ticks(fig, server)
    return _layout(fig, title, SECOND_AXIS, "", height=400)


def _label(row: pd.Series, by: list[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in by) or "run"


def throughput_vs_load(
    frame: pd.DataFrame,
    *,
    x: str = "asked_rate",
    by: list[str] | None = None,
    title: str = "Throughput vs offered load",
) -> go.Figure:
    """Served requests/s against offered load, one line per setting (the knee is the capacity)."""
    by = by or []
    fig = go.Figure()
    groups = frame.groupby(by) if by else [((), frame)]
    for _, group in groups:
        group = group.sort_values(x)
        fig.add_scatter(
            x=group[x],
            y=group["throughput_rps"],
            mode="lines+markers",
            name=_label(group.iloc[0], by),
        )
    if x == "asked_rate" and len(frame):
        top = float(frame[x].max())
        fig.add_scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            name="served = offered",
            line={"dash": "dot", "color": "grey"},
        )
    return _layout(fig, title, x.replace("_", " "), "served requests per second")


def latency_vs_load(
    frame: pd.DataFrame,
    *,
    x: str = "asked_rate",
    by: list[str] | None = None,
    percentiles: tuple[str, ...] = ("p50_ms", "p95_ms", "p99_ms"),
    slo_ms: float | None = None,
    title: str = "Latency vs offered load",
) -> go.Figure:
    """P50/P95/P99 against offered load, one line per setting and percentile, log y axis."""
    by = by or []
    fig = go.Figure()
    groups = frame.groupby(by) if by else [((), frame)]
    dashes = {"p50_ms": "dot", "p95_ms": "dash", "p99_ms": "solid"}
    for _, group in groups:
        group = group.sort_values(x)
        label = _label(group.iloc[0], by)
        for column in percentiles:
            fig.add_scatter(
                x=group[x], y=group[column], mode="lines+markers",
                name=f"{label} {column[:-3].upper()}", line={"dash": dashes.get(column, "solid")},
            )  # fmt: skip
    if slo_ms and len(frame):
        # A trace, not add_hline: shapes on a log axis take log10 coordinates.
        fig.add_scatter(
            x=[frame[x].min(), frame[x].max()], y=[slo_ms, slo_ms], mode="lines",
            name=f"SLO {slo_ms:g} ms", line={"dash": "dash", "color": "red"},
        )  # fmt: skip
    fig.update_yaxes(type="log", tickvals=LOG_MS_TICKS, ticktext=[f"{t:g}" for t in LOG_MS_TICKS])
    return _layout(fig, title, x.replace("_", " "), "latency (ms, log)")


def heatmap(frame: pd.DataFrame, *, x: str, y: str, value: str, title: str) -> go.Figure:
    """A value over a two-setting grid (e.g. max RPS under the SLO by pool_size x workers)."""
    table = frame.pivot_table(index=y, columns=x, values=value, aggfunc="max")
    fig = go.Figure(
        go.Heatmap(
            z=table.to_numpy(), x=[str(c) for c in table.columns], y=[str(i) for i in table.index],
            colorscale="Viridis", texttemplate="%{z:,.0f}", colorbar={"title": value},
        )
    )  # fmt: skip
    return _layout(fig, title, x, y)


def bars(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    title: str,
    reference: pd.Series | None = None,
    ytitle: str = "",
    low: str | None = None,
    high: str | None = None,
) -> go.Figure:
    """Bars of y by x, error bars from the `low`/`high` columns (a CI) when given, and an optional
    reference series beside them (e.g. a published ladder)."""
    fig = go.Figure()
    error = None
    if low is not None and high is not None:
        error = {
            "type": "data",
            "symmetric": False,
            "array": (frame[high] - frame[y]).clip(lower=0).tolist(),
            "arrayminus": (frame[y] - frame[low]).clip(lower=0).tolist(),
        }
    fig.add_bar(
        x=frame[x],
        y=frame[y],
        name="measured here" + (" (95% CI)" if error else ""),
        text=[_bar_text(v) for v in frame[y]],
        textposition="outside",
        error_y=error,
    )
    if reference is not None:
        fig.add_bar(
            x=list(reference.index),
            y=list(reference.values),
            name=str(reference.name or "reference"),
            opacity=0.5,
        )
    fig.update_layout(barmode="group")
    return _layout(fig, title, x, ytitle or y)


def ladder(
    table: pd.DataFrame, *, title: str = "Ratio to naive: measured here (95% CI) vs published"
) -> go.Figure:
    """A climbed ladder's ratio to naive per step, with its confidence interval, beside the published ratio."""
    published = table.set_index("step")["published_ratio"].rename("published ratio (cluster)")
    return bars(
        table, x="step", y="ratio_to_naive", low="ratio_ci_low", high="ratio_ci_high",
        reference=published, title=title, ytitle="x naive",
    )  # fmt: skip


def comparison(table: pd.DataFrame, *, title: str = "b against a (95% CI)") -> go.Figure:
    """Relative differences with bootstrap confidence intervals, one bar per metric."""
    base = table["a"].replace(0, float("nan"))
    relative = 100 * table["diff"] / base
    low = 100 * table["ci_low"] / base
    high = 100 * table["ci_high"] / base
    colors = ["#2a9d8f" if s else "#adb5bd" for s in table["significant"]]
    fig = go.Figure(
        go.Bar(
            x=table["metric"], y=relative, marker_color=colors,
            error_y={"type": "data", "symmetric": False, "array": high - relative, "arrayminus": relative - low},
            text=["significant" if s else "no significant difference" for s in table["significant"]],
        )
    )  # fmt: skip
    return _layout(fig, title, "metric", "change (%)")


def _bar_text(value: float) -> str:
    """A bar's label: whole numbers for rates, one decimal for ratios (3.5x, not 4x)."""
    return (
        f"{value:,.0f}"
        if abs(value) >= 100
        else f"{value:.2g}"
        if abs(value) < 1
        else f"{value:.1f}"
    )


def anatomy(
    tables: Mapping[str, pd.DataFrame] | pd.DataFrame,
    *,
    title: str = "Where a request's time goes in the service",
) -> go.Figure:
    """Stacked bars of mean ms per request by stage, one bar per run (or ladder step).

    Takes one anatomy table (`RunResult.anatomy()`) or a mapping of name → table; the bars'
    lengths are the mean service time, and hovering a segment gives the stage's P50/P95.
    """
    from workbench.anatomy import LABELS, OTHER

    named = {"run": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
    names = list(named)
    order: list[str] = []
    for table in named.values():
        order += [stage for stage in table.index if stage not in order]
    order = [s for s in order if s not in ("total", "accounted") and s != OTHER] + [OTHER]
    records = {n: table.to_dict("index") for n, table in named.items()}
    fig = go.Figure()
    for stage in order:
        rows = [records[n].get(stage) for n in names]
        fig.add_bar(
            y=names,
            x=[float(r["mean_ms"]) if r is not None else 0.0 for r in rows],
            name=LABELS.get(stage, stage),
            orientation="h",
            customdata=[
                [float(r["p50_ms"]), float(r["p95_ms"]), 100 * float(r["share"])]
                if r is not None
                else [float("nan")] * 3
                for r in rows
            ],
            hovertemplate=(
                "%{y}: " + LABELS.get(stage, stage) + " %{x:.2f} ms per request "
                "(%{customdata[2]:.0f}%); P50 %{customdata[0]:.2f}, P95 %{customdata[1]:.2f} ms"
                "<extra></extra>"
            ),
        )
    fig.update_layout(barmode="stack", legend={"traceorder": "normal"})
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, "mean ms per request in the service", "")


def cpu_per_request(
    frame: pd.DataFrame | Mapping[str, Mapping[str, float]],
    *,
    title: str = "CPU per request by component",
) -> go.Figure:
    """Stacked bars of server-side CPU ms per request by component, one bar per row (run or step).

    frame: index = run or ladder step, columns = components (service, postgres, redis, upstream,
    generator) or summary columns cpu_ms_per_request_<component>; or {run: {component: ms}}
    (RunResult.cpu_ms_per_request()). The generator, client side, is a marker beside the bars,
    not part of the server's stack.
    """
    from workbench.cost import LABELS, PREFIX, SERVER

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame.from_dict({k: dict(v) for k, v in frame.items()}, orient="index")
    # a summary row also has settings columns (server="uvicorn"): keep only the cost columns
    prefixed = [c for c in frame.columns if str(c).startswith(PREFIX)]
    table = frame[prefixed] if prefixed else frame
    table = table.rename(columns=lambda c: str(c).removeprefix(PREFIX))
    x = [str(i) for i in table.index]
    fig = go.Figure()
    for name in SERVER:
        if name in table and table[name].notna().any():
            fig.add_bar(
                x=x, y=table[name], name=LABELS[name],
                hovertemplate="%{y:.3f} ms<extra>%{fullData.name}</extra>",
            )  # fmt: skip
    present = [name for name in SERVER if name in table]
    if present:
        total = table[present].sum(axis=1, min_count=1)
        fig.add_scatter(
            x=x, y=total, mode="text", text=[f"{v:.2f} ms" for v in total],
            textposition="top center", name="server side", showlegend=False,
        )  # fmt: skip
    if "generator" in table and table["generator"].notna().any():
        fig.add_scatter(
            x=x, y=table["generator"], mode="markers", name=LABELS["generator"],
            marker={"symbol": "diamond", "size": 11, "color": "grey"},
            hovertemplate="%{y:.3f} ms<extra>%{fullData.name}</extra>",
        )  # fmt: skip
    fig.update_layout(barmode="stack")
    return _layout(fig, title, "", "CPU ms per request")


def runs_side_by_side(
    frame: pd.DataFrame, *, title: str = "Runs side by side (95% CI)"
) -> go.Figure:
    """Throughput and P50/P95/P99 of several runs, one bar each with its confidence interval.

    frame: one row per run (index: its label) with `<metric>`, `<metric>_low`, `<metric>_high`
    columns for throughput_rps, p50_ms, p95_ms, p99_ms (`panel.comparison` builds it).
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("throughput (req/s)", "latency percentiles (ms)")
    )
    x = [str(i) for i in frame.index]

    def bar(metric: str, name: str, col: int) -> None:
        value = frame[metric]
        fig.add_bar(
            x=x, y=value, name=name, row=1, col=col,
            error_y={
                "type": "data", "symmetric": False,
                "array": (frame[f"{metric}_high"] - value).clip(lower=0).tolist(),
                "arrayminus": (value - frame[f"{metric}_low"]).clip(lower=0).tolist(),
            },
            hovertemplate="%{x}: %{y:,.2f}<extra>" + name + "</extra>",
        )  # fmt: skip

    bar("throughput_rps", "req/s", 1)
    for column, name in PERCENTILE_COLUMNS:
        bar(column, name, 2)
    fig.update_layout(barmode="group")
    return _layout(fig, title, "", "", height=400)
