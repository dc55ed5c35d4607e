"""Reports: the quickstart executed headless, rendered offline in Chromium with every chart drawn."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.browser import Browser
from workbench.report import ensure_kernel
from workbench.stack import Stack

from .conftest import processes_under

# The end-to-end tier (`make test-fast` skips it), on one xdist worker (`make test` runs each file
# on one): one report is shared.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report")]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project folder of this module's runs and reports (not the checkout's data/)."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def quickstart_html(stack: Stack, home: Path) -> tuple[Path, str]:
    """The quickstart rendered through the CLI, as `make demo` does, with short parameters;
    the report's path and what the CLI printed (stdout, then stderr)."""
    env = {
        **os.environ,
        "WORKBENCH_STACK_DIR": str(stack.root / "cli"),
        "WORKBENCH_HOME": str(home),
    }
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "report", "01_quickstart",
         "-p", "duration", "1.5", "-p", "warmup", "0.5", "-p", "users", "500",
         "-p", "connections", "4", "-p", "rate", "100"],  # open loop: nothing needs saturation
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert processes_under(stack.root / "cli") == set(), "a server of the run is still alive"
    return Path(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


def test_cli_prints_the_report_path_last(quickstart_html: tuple[Path, str], home: Path) -> None:
    html, _ = quickstart_html
    assert html.suffix == ".html" and html.is_file()
    assert html.parent == home / "data" / "reports"


def test_report_is_self_contained(quickstart_html: tuple[Path, str]) -> None:
    text = quickstart_html[0].read_text()
    assert not re.findall(r'<script[^>]+src="https?://', text), "a script comes from the network"
    assert "plotly" in text.lower()


def test_every_chart_draws_offline_in_chromium(
    quickstart_html: tuple[Path, str], tmp_path: Path
) -> None:
    html, _ = quickstart_html
    executed = json.loads(html.with_suffix(".ipynb").read_text())
    figures = sum(
        "application/vnd.plotly.v1+json" in output.get("data", {})
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
    )
    assert figures >= 4
    with Browser() as browser:  # one Chromium for both
        assert browser.count_charts(html) == figures
        png = browser.screenshot(html, tmp_path / "report.png")
    assert png.stat().st_size > 20_000


def test_quickstart_shows_the_cost_per_request_and_its_projection(
    quickstart_html: tuple[Path, str],
) -> None:
    executed = json.loads(quickstart_html[0].with_suffix(".ipynb").read_text())
    texts = [
        "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
    ]
    sentence = next(t for t in texts if t.startswith("Projection (CPU-bound)"))
    assert "on 8 cores" in sentence and "Assumption:" in sentence
    table = next(t for t in texts if "CPU ms per request" in t)
    assert "PostgreSQL" in table and "generator (client side)" in table
    figures = [
        output["data"]["application/vnd.plotly.v1+json"]
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
        if "application/vnd.plotly.v1+json" in output.get("data", {})
    ]
    assert any(f["layout"]["title"]["text"] == "CPU per request by component" for f in figures)


def test_the_per_second_lines_are_in_the_terminal_not_in_the_report(
    quickstart_html: tuple[Path, str],
) -> None:
    html, printed = quickstart_html
    line = re.compile(r"^\s+\d+\.\ds\s+[\d,]+ req/s", re.MULTILINE)
    executed = json.loads(html.with_suffix(".ipynb").read_text())
    outputs = "".join(
        "".join(output.get("text", ""))
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
    )
    assert "load http://127.0.0.1:" in outputs  # the load's one line stays in the notebook
    assert not line.search(outputs)  # its per-second lines: the final chart shows them
    assert [m.split("s")[0].strip() for m in line.findall(printed)] == ["1.0", "1.5"]


def test_bad_papermill_parameter_stops_in_the_first_cell(tmp_path: Path, stack_root: Path) -> None:
    root = stack_root / "papermill"
    out = tmp_path / "out.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "01_quickstart.ipynb"), str(out),
         "-k", ensure_kernel(), "-p", "connections", "-3"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "WORKBENCH_STACK_DIR": str(root)},
    )  # fmt: skip
    assert done.returncode != 0
    assert "connections: must be an integer >= 1, got -3" in done.stderr
    cells = json.loads(out.read_text())["cells"]
    assert "An Exception was encountered" in "".join(cells[0]["source"])  # papermill's banner
    errors = [
        c for c in cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    assert len(errors) == 1 and "check_params" in "".join(errors[0]["source"])
    assert not root.exists(), "a stack was started despite the bad parameter"
    assert processes_under(root) == set()


def test_the_stored_run_keeps_one_small_copy_of_its_notebook(
    quickstart_html: tuple[Path, str], home: Path
) -> None:
    from workbench.store import Store

    executed = quickstart_html[0].with_suffix(".ipynb")
    assert executed.stat().st_size <= 500_000, "plotly.js is in the executed notebook again"
    store = Store(home / "data" / "runs")
    (run_id,) = store.ids()  # this module's home: the quickstart's run, no other
    folder = store.path(run_id)
    assert json.loads((folder / "manifest.json").read_text())["notebook"] == str(executed.resolve())
    assert os.path.samefile(folder / "notebook.ipynb", executed)  # one copy on disk, linked
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 500_000
