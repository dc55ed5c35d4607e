"""The live view: a watched kernel redraws one output area every second while a load runs; an
unwatched one (papermill) draws the final chart once and logs the per-second lines."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from workbench.kernel import WarmKernel
from workbench.live import LINES_ENV, MIME_PLOTLY, LiveView, figure, kernel_log
from workbench.stack import Stack

from ._kernel import Cell, kernel, warm

WIDGET = "application/vnd.jupyter.widget-view+json"
LINE = re.compile(r"^\s+\d+\.\ds\s+[\d,]+ req/s", re.MULTILINE)  # a per-second text line


def run_code(stack: Stack, store: Path, *, duration: float, runs: int = 1) -> str:
    """A cell that loads the test stack `runs` times (the kernel attaches to its servers), in an
    open loop at a modest rate: what is drawn does not need the service saturated."""
    return f"""
import workbench as wb
wb.setup()
stack = wb.Stack(database_url={stack.database_url!r}, redis_url={stack.redis_url!r},
                 upstream_url={stack.upstream_url!r}, users={stack.users}).start()
store = wb.Store(__import__("pathlib").Path({str(store)!r}))
for _ in range({runs}):
    wb.Experiment(connections=4, rate=100, duration={duration}, warmup=0.2, name="quickstart").run(stack, store=store)
"""


def charts(cell: Cell) -> list[tuple[float, str, dict[str, Any], str | None]]:
    """(time, how, plotly figure, display id) of every chart the cell sent: as an output
    (display_data, update_display_data) or as the figure of a live ipywidgets Output (comm_msg)."""
    out = []
    for at, message in cell.of("display_data", "update_display_data", "comm_msg"):
        content = message["content"]
        if message["msg_type"] == "comm_msg":
            outputs = content["data"].get("state", {}).get("outputs") or []
            data = outputs[0]["data"] if outputs else {}
        else:
            data = content["data"]
        if MIME_PLOTLY in data:
            display_id = content.get("transient", {}).get("display_id")
            out.append((at, message["msg_type"], data[MIME_PLOTLY], display_id))
    return out


def title(fig: dict[str, Any]) -> str:
    return str(fig["layout"]["title"]["text"])


def test_the_figure_counts_seconds_from_one_on_whole_ticks() -> None:
    rows = [
        {"second": 0, "rate": 100.0, "errors": 0, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0},
        {"second": 1, "rate": 0.0, "errors": 5, "p50_ms": float("nan"), "p95_ms": 2.0, "p99_ms": 3.0},
        {"second": 2, "rate": 90.0, "errors": 0, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0},
    ]  # fmt: skip
    fig = figure(rows, duration=5, title="t")
    traces = {trace["name"]: trace for trace in fig["data"]}
    assert traces["requests/s"]["x"] == [1, 2, 3]
    assert traces["P50"]["y"] == [1.0, None, 1.0]  # a second without answers is a gap
    assert traces["errors/s"]["y"] == [0, 5, 0]
    assert "asked rate" not in traces  # closed loop
    assert fig["layout"]["xaxis"]["range"] == [0.5, 5.5]  # the whole run, from the start
    assert fig["layout"]["xaxis"]["dtick"] == 1 and fig["layout"]["xaxis2"]["tickformat"] == "d"


def test_the_title_quotes_the_runs_numbers_not_the_last_seconds() -> None:
    view = LiveView(watched=False)
    view.duration = 3
    view.rows = [{"second": n, "rate": 1500.0, "p99_ms": p99} for n, p99 in enumerate((98, 20))]
    view.so_far = {"measured_s": 2.0, "rate": 1490.0, "errors": 0, "p99_ms": 91.04}
    assert view.title().endswith(": 2 of 3 s measured (so far: 1,490 req/s, P99 91.0 ms)")
    view.rows.append({"second": 2, "rate": 1500.0, "p99_ms": 20.0})
    view.so_far = {"measured_s": 3.0, "rate": 1493.0, "errors": 4, "p99_ms": 80.0}
    assert view.title().endswith(
        "3 of 3 s measured (whole run: 1,493 req/s, P99 80.0 ms, 4 errors)"
    )


def test_a_shorter_last_second_is_labelled() -> None:
    rows = [{"second": n, "rate": 10.0} for n in range(3)]
    fig = figure(rows, duration=2.5, title="t")
    assert fig["layout"]["xaxis2"]["ticktext"] == ["1", "2", "3 (0.5 s)"]
    assert fig["data"][0]["hovertext"][-1] == "second 3 (its first 0.5 s)"
    assert "ticktext" not in figure(rows, duration=3, title="t")["layout"]["xaxis2"]


def test_the_kernel_log_writes_lines_to_stderr_unless_turned_off(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write = kernel_log()
    write("  1.0s  100 req/s")
    assert capfd.readouterr() == ("", "  1.0s  100 req/s\n")
    monkeypatch.setenv(LINES_ENV, "off")  # a sweep's points: nowhere
    write("  2.0s  100 req/s")
    assert capfd.readouterr() == ("", "")


@pytest.mark.slow
def test_a_watched_kernel_redraws_one_area_every_second_before_the_cell_ends(
    stack: Stack, tmp_path: Path, warm_kernel: WarmKernel
) -> None:
    with warm(warm_kernel, watched=True) as k:
        cell = k.run(run_code(stack, tmp_path, duration=3, runs=2))
    assert cell.reply["status"] == "ok", cell.reply
    drawn = charts(cell)
    # the area: a live widget while a run goes, its final chart a plain plotly output after
    areas = [
        m
        for _, m in cell.of("display_data", "update_display_data")
        if m["content"].get("transient", {}).get("display_id")
    ]
    ids = {m["content"]["transient"]["display_id"] for m in areas}
    assert len(ids) == 1  # one output area for both runs
    assert WIDGET in areas[0]["content"]["data"]
    finals = [fig for _, kind, fig, _ in drawn if kind == "update_display_data"]
    assert len(finals) == 2 and all(": 3 of 3 s measured" in title(fig) for fig in finals)
    measured = [(at, fig) for at, kind, fig, _ in drawn if kind == "comm_msg"]
    measured = [(at, fig) for at, fig in measured if " of 3 s measured" in title(fig)]
    assert [title(fig).split(": ")[1][:11] for _, fig in measured] == [
        f"{n} of 3 s me" for n in (1, 2, 3, 1, 2, 3)
    ]
    # drawn while the load ran: a second apart, well before the cell ended
    first_run = [at for at, _ in measured[:2]]
    assert first_run[1] - first_run[0] == pytest.approx(1.0, abs=0.6)
    assert first_run[1] < cell.ended - 2.0
    assert "(run 2 in this cell)" in title(measured[-1][1])
    assert {trace["name"]: trace["x"] for trace in finals[-1]["data"]}["P99"] == [1, 2, 3]
    assert not LINE.search(cell.text())  # the chart replaces the per-second text lines
    assert "load http://127.0.0.1:" in cell.text() and "/users/{id}:" in cell.text()
    assert cell.text("stderr") == ""


@pytest.mark.slow
def test_an_unwatched_kernel_draws_the_final_chart_once_and_logs_the_lines(
    stack: Stack, tmp_path: Path
) -> None:
    log = tmp_path / "kernel.log"
    # as papermill's kernel: ipykernel captures its fd 2 too (it does not under pytest)
    with (
        log.open("w") as stderr,
        kernel(watched=False, env={"PYTEST_CURRENT_TEST": None}, stderr=stderr) as k,
    ):
        cell = k.run(run_code(stack, tmp_path, duration=2))
    assert cell.reply["status"] == "ok", cell.reply
    drawn = charts(cell)
    assert len(drawn) == 1  # papermill keeps this one output: the final chart
    _, kind, fig, _ = drawn[0]
    assert kind == "display_data" and "2 of 2 s measured" in title(fig)
    assert {trace["name"]: trace["x"] for trace in fig["data"]}["requests/s"] == [1, 2]
    html = cell.of("display_data")[-1][1]["content"]["data"]["text/html"]
    assert "Plotly.newPlot" in html  # reports draw it from the HTML (plotly.js from to_html)
    # the lines go to the kernel's log (papermill's terminal), not into the notebook
    assert not LINE.search(cell.text()) and not LINE.search(cell.text("stderr"))
    assert len(LINE.findall(log.read_text())) == 2, log.read_text()[-2000:]
