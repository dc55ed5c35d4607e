"""Showing figures in notebooks so that they render in JupyterLab and in offline HTML reports."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

_MIME_PLOTLY = "application/vnd.plotly.v1+json"
COST_INTRO = (
    "CPU milliseconds each component spent per request in the measured window (warm-up "
    "excluded), from the processes' own CPU counters; the generator is the client side. The "
    "projection says what rate these costs would allow on a bigger machine or a fleet, if "
    "throughput were CPU-bound."
)
PROJECTED_CORES = 8  # the account's 8 workers


def setup() -> None:
    """Embed plotly.js once at the top of a notebook, so exported reports draw offline."""
    from IPython.display import HTML, display

    # Under papermill plotly keeps only its JSON bundle, which nbconvert's HTML drops; a
    # script with plotly.js in the notebook's output makes every later figure's HTML work.
    script = plotly.offline.get_plotlyjs()
    display(HTML(f'<script type="text/javascript">{script}</script>'))


def show(fig: go.Figure) -> None:
    """Display fig as plotly JSON (JupyterLab) and as HTML (reports)."""
    from IPython.display import display

    html = fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})
    display({_MIME_PLOTLY: json.loads(fig.to_json()), "text/html": html}, raw=True)


def summary_table(run: Any) -> pd.DataFrame:
    """The headline numbers of a run as a small table (for notebooks and reports)."""
    row = run.summary()
    keys = [
        ("throughput_rps", "throughput (req/s)"),
        ("requests", "requests"),
        ("errors", "errors"),
        ("p50_ms", "latency P50 (ms)"),
        ("p95_ms", "latency P95 (ms)"),
        ("p99_ms", "latency P99 (ms)"),
        ("p999_ms", "latency P99.9 (ms)"),
        ("max_ms", "latency max (ms)"),
        ("generator_saturated", "generator saturated"),
        ("bottleneck", "bottleneck"),
    ]
    return pd.DataFrame(
        {"value": [row.get(k) for k, _ in keys]}, index=pd.Index([label for _, label in keys])
    )


def cost_table(run: Any) -> pd.DataFrame:
    """A run's cost per request: CPU ms and share of the server side's CPU, one row a component."""
    from workbench.cost import LABELS

    ms = run.cpu_ms_per_request()
    server = ms.get("server", float("nan"))
    rows = {LABELS[name]: value for name, value in ms.items()}
    share = [
        value / server if name not in ("server", "generator") and server > 0 else float("nan")
        for name, value in ms.items()
    ]
    return pd.DataFrame(
        {"CPU ms per request": list(rows.values()), "share of server CPU": share},
        index=pd.Index(list(rows), name="component"),
    ).round(3)


def cost_section(run: Any, *, cores: int = PROJECTED_CORES) -> None:
    """A run's cost per request in a notebook: what it means, the projection, the table, the chart."""
    from IPython.display import Markdown, display

    from workbench import plots

    display(Markdown(COST_INTRO))
    print(run.projection(cores=cores).sentence())
    display(cost_table(run))
    show(plots.cpu_per_request({run.run_id: run.cpu_ms_per_request()}))
