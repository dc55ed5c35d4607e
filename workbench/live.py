"""Live view: one output area per notebook cell, redrawn every second while a load runs in it."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from workbench.load import progress
from workbench.recording import RunStarted

MIME_PLOTLY = "application/vnd.plotly.v1+json"
# A kernel started by a Jupyter server (JupyterLab, Notebook) has a person watching its outputs;
# papermill's and nbclient's kernels do not.
SESSION_ENV = "JPY_SESSION_NAME"
# "off": an unwatched kernel drops the per-second text lines instead of logging them (a sweep's
# points, whose terminal shows a progress bar); else they go to the kernel's log (its stderr).
LINES_ENV = "WORKBENCH_LOAD_LINES"
# Labels that hold a study's id (a sweep's, a capacity search's...) or repeat the run's name.
STUDY_LABELS = frozenset({"sweep", "point", "capacity", "ladder", "ladder_step", "tune"})
TRACES = (  # (row column, name, subplot row, style)
    ("rate", "requests/s", 1, {"mode": "lines+markers"}),
    ("asked_rate", "asked rate", 1, {"mode": "lines", "line": {"dash": "dash"}}),
    ("errors", "errors/s", 1, {"type": "bar", "opacity": 0.5}),
    ("p50_ms", "P50", 2, {"mode": "lines+markers"}),
    ("p95_ms", "P95", 2, {"mode": "lines+markers"}),
    ("p99_ms", "P99", 2, {"mode": "lines+markers"}),
)


def watched() -> bool:
    """True in a kernel a person watches (JupyterLab), False under papermill or in a script."""
    return SESSION_ENV in os.environ and _shell() is not None


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


@functools.cache
def _layout() -> dict[str, Any]:
    """Two charts over the seconds of a run: requests/s (with errors) above, latency below."""
    from plotly.subplots import make_subplots

    from workbench import plots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    plots._layout(fig, "", "", "", height=480)
    fig.update_yaxes(title_text="requests per second", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="latency (ms)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text=plots.SECOND_AXIS, row=2, col=1)
    fig.update_xaxes(tickformat="d", tick0=1)
    layout: dict[str, Any] = fig.to_plotly_json()["layout"]
    return layout


def figure(rows: Sequence[Mapping[str, Any]], *, duration: float, title: str) -> dict[str, Any]:
    """The live chart of the seconds measured so far, as a plotly figure dict (x: 1 = first second)."""
    seconds = max(1, math.ceil(duration - 1e-9))
    # A duration that is no whole number of seconds ends in a shorter second: labelled so.
    partial = duration - (seconds - 1) if duration < seconds - 1e-9 else None
    x = [int(r["second"]) + 1 for r in rows]
    hover = [
        f"second {n} (its first {partial:g} s)" if partial and n == seconds else f"second {n}"
        for n in x
    ]
    data = []
    for column, name, row, style in TRACES:
        values = [_number(r.get(column)) for r in rows]
        if column == "asked_rate" and all(v is None for v in values):
            continue
        if column == "errors" and not any(values):
            continue
        suffix = "" if row == 1 else "2"
        trace = {"type": "scatter", "x": x, "y": values, "name": name, "hovertext": hover, **style}
        data.append({**trace, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})
    layout = copy.deepcopy(_layout())
    layout["title"] = {"text": title}
    dtick = 1 if seconds <= 20 else None
    for axis in ("xaxis", "xaxis2"):
        layout[axis].update(range=[0.5, seconds + 0.5], dtick=dtick)
        if partial and dtick:
            ticks = list(range(1, seconds + 1))
            labels = [str(n) for n in ticks[:-1]] + [f"{seconds} ({partial:g} s)"]
            layout[axis].update(tickmode="array", tickvals=ticks, ticktext=labels)
    return {"data": data, "layout": layout}


def _number(value: Any) -> float | None:
    """A JSON-safe number: NaN (a second without answers) becomes a gap."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def bundle(fig: dict[str, Any]) -> dict[str, Any]:
    """A display bundle drawing fig in JupyterLab (plotly JSON) and in HTML reports (a div)."""
    import plotly.io

    html = plotly.io.to_html(
        fig, include_plotlyjs=False, full_html=False, validate=False,
        config={"displaylogo": False},
    )  # fmt: skip
    return {MIME_PLOTLY: json.loads(json.dumps(fig)), "text/html": html}


class LiveView:
    """Draws each measured second of the loads run in a notebook cell into one output area.

    Watched (JupyterLab): redrawn every second, and the per-second text lines are left out.
    Unwatched (papermill): drawn once when a run's last second arrives, so the executed notebook
    holds the final chart; the text lines go to the kernel's log (kernel_log), not into the
    notebook. A cell that runs several loads (a sweep, a capacity search, a ladder) redraws the
    same area with each step.
    """

    def __init__(self, *, watched: bool) -> None:
        self.watched = watched
        self.handle: Any = None
        self.live: Any = None  # the ipywidgets Output a watched area shows while a run goes
        self.widget_shown = False  # the area shows `live` (not a final chart)
        self.area: object = None
        self.runs = 0
        self.started: RunStarted | None = None
        self.rows: list[dict[str, Any]] = []
        self.so_far: Mapping[str, Any] = {}
        self.duration = 0.0

    def __call__(self, event: object) -> bool:
        if isinstance(event, RunStarted):
            self._new_area_if_new_cell()
            self.runs += 1
            self.started, self.rows, self.duration = event, [], event.duration
            self.so_far = {}
            if self.watched:
                self._draw(waiting=True)
            return False
        if not isinstance(event, progress.Second):
            return False
        if event.index == 0:
            if self.started is None or self.rows:  # a load no run announced (run_load in a cell)
                self._new_area_if_new_cell()
                self.runs += 1
                self.started = None
            self.rows = []
        self.duration = event.duration
        self.so_far = event.so_far
        self.rows.append(dict(event.row))
        last = event.index + 1 >= math.ceil(event.duration - 1e-9)
        if self.watched or last:
            self._draw(final=last)
        if last:
            self.started = None
        return self.watched

    def _new_area_if_new_cell(self) -> None:
        area = _area()
        if area != self.area:
            if self.live is not None:
                self.live.close()
            self.area, self.handle, self.live, self.runs = area, None, None, 0
            self.widget_shown = False

    def title(self, *, waiting: bool = False) -> str:
        """What the chart shows: the run (and study step), seconds measured of the planned ones."""
        started = self.started
        name = started.name if started is not None and started.name else "load"
        parts = [name]
        if started is not None:
            parts += [f"{k} {v}" for k, v in started.labels.items() if k not in STUDY_LABELS]
            if started.rate:
                parts.append(f"{started.rate:,.0f} req/s asked")
        head = " · ".join(str(p) for p in parts)
        if self.runs > 1:
            head += f" (run {self.runs} in this cell)"
        if waiting:
            return f"{head}: starting the service and the warm-up..."
        total = max(1, math.ceil(self.duration - 1e-9))
        done = len(self.rows)
        # The run's numbers over the seconds so far (its summary's, once all are in), not the
        # last second's: one second's P99 rests on a hundredth of its requests.
        so_far = self.so_far
        p99 = _number(so_far.get("p99_ms"))
        numbers = f"{_number(so_far.get('rate')) or 0:,.0f} req/s, P99 " + (
            f"{p99:.1f} ms" if p99 is not None else "-"
        )
        errors = int(so_far.get("errors") or 0)
        if errors:
            numbers += f", {errors:,} errors"
        over = "whole run" if done >= total else "so far"
        return f"{head}: {done} of {total} s measured ({over}: {numbers})"

    def _draw(self, *, waiting: bool = False, final: bool = False) -> None:
        """Show the chart so far: in place in JupyterLab, as the area's final output when final.

        JupyterLab's plotly renderer draws a figure once and ignores updates of it, so while a
        run goes the area holds an ipywidgets Output whose figure is replaced each second; the
        final chart then replaces the widget as a plain plotly output (what notebooks and
        reports keep).
        """
        fig = figure(self.rows, duration=self.duration, title=self.title(waiting=waiting))
        data = bundle(fig)
        if self.watched:
            if self.live is None:
                import ipywidgets

                self.live = ipywidgets.Output()
            # Also when final: inside another widget's Output (the panel's) an update of the
            # area may not reach it, and the live widget is what stays on screen there.
            self.live.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)
            if not final and not self.widget_shown:
                self._show(self.live)
                self.widget_shown = True
        if final or not self.watched:
            self._show(data, raw=True)
            self.widget_shown = False

    def _show(self, what: Any, *, raw: bool = False) -> None:
        from IPython.display import display

        if self.handle is None:
            self.handle = display(what, raw=raw, display_id=True)
        else:
            self.handle.update(what, raw=raw)


def _area() -> object:
    """Which output area events go to: the request the kernel is answering (a cell, a button click)."""
    shell = _shell()
    if shell is None:
        return None
    header = shell.parent_header or {}
    return header.get("header", {}).get("msg_id")


_VIEW: LiveView | None = None


def kernel_log() -> Callable[[str], None]:
    """A writer of lines to the kernel process's own stderr: the terminal of papermill (or of
    `workbench report`) and the Jupyter server's log, never a cell's output."""
    # ipykernel captures fd 2 into cell outputs; its stream's fileno() is the original one.
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else -1

    def write(line: str) -> None:
        if fd >= 0 and os.environ.get(LINES_ENV) != "off":
            with contextlib.suppress(OSError):
                os.write(fd, (line + "\n").encode())

    return write


def install() -> LiveView | None:
    """Draw loads live in this kernel's cells (once per kernel); None outside a kernel.

    Unwatched, the per-second text lines go to the kernel's log ($WORKBENCH_LOAD_LINES=off:
    nowhere); watched, the live chart replaces them.
    """
    global _VIEW
    if _shell() is None:
        return None
    if _VIEW is None:
        _VIEW = LiveView(watched=watched())
        progress.add(_VIEW)
        if not _VIEW.watched:
            progress.lines_to(kernel_log())
    return _VIEW


def uninstall() -> None:
    """Stop drawing loads live (and print the per-second lines again)."""
    global _VIEW
    if _VIEW is not None:
        progress.remove(_VIEW)
        progress.lines_to(None)
        _VIEW = None
